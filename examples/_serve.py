"""The one way every example is served: uvicorn on ``HOST``:``PORT`` (default 127.0.0.1:8000)."""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def serve(app: FastAPI, *, next_steps: str = "") -> None:
    """Run ``app`` until interrupted, on ``$HOST``:``$PORT``.

    ``next_steps``: what to do once it runs, printed first; ``{url}`` becomes the server's URL.
    """
    host = os.environ.get("HOST", DEFAULT_HOST)
    port = int(os.environ.get("PORT", str(DEFAULT_PORT)))
    if next_steps:
        url = f"http://{host}:{port if port else '<the port uvicorn prints below>'}"
        print(next_steps.format(url=url), flush=True)
    uvicorn.run(app, host=host, port=port)
