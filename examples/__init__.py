"""Runnable examples of fastapi-realtime, one module each.

Run one with ``python -m examples.<name>`` from the repository root; it serves on
http://127.0.0.1:8000 unless the ``HOST`` and ``PORT`` environment variables say otherwise.
Every module exposes its FastAPI ``app`` and its ``hub`` at module level, so tests (and
``uvicorn examples.<name>:app``) can import them.

- :mod:`examples.echo`: the FastAPI tutorial's echo endpoint on ``hub.connection()``.
- :mod:`examples.chat`: chat rooms, a broadcast announcement route, and the demo page at ``/``.
- :mod:`examples.ticker`: a background publisher owned by the lifespan, and a per-connection task.
- :mod:`examples.auth`: a WebSocket endpoint behind ``JWTAuth``, with a route minting demo tokens.
"""
