"""The HTTP server API, compatible with Centrifugo's: ``POST /api/<method>`` with a JSON body.

Mount it with ``app.include_router(hub.api_router(api_key="..."))``. Every method calls the
same :class:`~.hub.Node` method that Python code calls in-process; this module only checks the
key, decodes, and encodes the reply in Centrifugo's shapes, so Centrifugo's clients (the
``cent`` package on PyPI, for one) work against it unchanged.

Replies, as Centrifugo sends them:

- success: HTTP 200 ``{"result": {...}}``;
- a method's error (unknown channel, history off, a field missing or of the wrong type):
  HTTP 200 ``{"error": {"code": 102, "message": "unknown channel"}}``;
- a body that is not a JSON object (or a ``batch`` that cannot run at all): HTTP 400 with
  ``{"error": {"code": 107, ...}}``; a body over ``api_max_body_bytes``: HTTP 413, same shape;
- a missing or wrong key: HTTP 401 and nothing is done.

``batch`` answers ``{"replies": [{"publish": {...}}, {"error": {...}}, ...]}``, one reply per
command in order; ``broadcast`` answers one ``{"result"}`` or ``{"error"}`` per channel.
"""

from __future__ import annotations

from .router import make_router

__all__ = ["make_router"]
