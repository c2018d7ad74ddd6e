"""The one way every example is served: uvicorn on ``HOST``:``PORT`` (default 127.0.0.1:8000)."""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def serve(app: FastAPI) -> None:
    """Run ``app`` until interrupted, on ``$HOST``:``$PORT``."""
    host = os.environ.get("HOST", DEFAULT_HOST)
    port = int(os.environ.get("PORT", str(DEFAULT_PORT)))
    uvicorn.run(app, host=host, port=port)
