"""The standalone server: ``fastapi-realtime serve`` and what it is made of.

- :mod:`.config`: :class:`ServerConfig`, loaded from a TOML file or a Centrifugo v6
  JSON/YAML file, the environment (``FASTAPI_REALTIME_...``) and command-line flags;
- :mod:`.app`: :func:`create_app` builds the FastAPI app (protocol endpoint, HTTP API,
  ``/health``, ``/ready``, ``/metrics``, the admin page, the demo when asked);
- :mod:`.cli`: the ``fastapi-realtime`` command (``serve``, ``token``, ``check-config``, ``version``).

Needs the ``server`` extra: ``pip install "fastapi-realtime[server]"``.
"""
