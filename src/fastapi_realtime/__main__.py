"""``python -m fastapi_realtime``: the ``fastapi-realtime`` command (see :mod:`.server.cli`)."""

from .server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
