"""Which browser origins may open a connection. Pure: strings in, a yes or no out.

Browsers send an ``Origin`` header with every WebSocket handshake (and every cross-site
``fetch``), and let any page open a WebSocket to any site, with that site's cookies. Checking
the origin is what stops a page on ``https://evil.example`` from riding a user's cookie into
``wss://chat.example.com`` (cross-site WebSocket hijacking).

An :class:`OriginPolicy` allows:

- a request without ``Origin`` (not a browser: SDKs, servers, ``websocat``);
- the same origin: the origin's host and port are those of the ``Host`` header the browser sent
  (a ``Host`` without a port matches the default port of the origin's scheme);
- an origin listed exactly (``https://app.example.com``, ``http://localhost:3000``);
- an origin matching a pattern with one leading ``*.`` label (``https://*.example.com``: any
  subdomain of ``example.com``, at any depth, but not ``example.com`` itself);
- anything, when the list holds ``"*"`` (the check is off).

Everything else is refused, including the opaque origin ``null`` (sandboxed frames, ``file:``
pages) and anything that is not a well-formed ``scheme://host[:port]``. Hosts compare
case-insensitively; scheme and port must match too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_-]+(?:\.[a-z0-9_-]+)*)(?::(?P<port>[0-9]{1,5}))?"
)
_HOST = re.compile(r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_-]+(?:\.[a-z0-9_-]+)*)(?::(?P<port>[0-9]{1,5}))?")


@dataclass(frozen=True, slots=True)
class Origin:
    """A serialized origin, parsed: lower-case scheme and host, and the effective port."""

    scheme: str
    host: str
    port: int | None

    @classmethod
    def parse(cls, text: str) -> Origin | None:
        """``scheme://host[:port]`` parsed, or ``None`` when ``text`` is anything else."""
        match = _ORIGIN.fullmatch(text.strip().lower())
        if match is None:
            return None
        scheme, port = match["scheme"], match["port"]
        return cls(scheme, match["host"], int(port) if port else DEFAULT_PORTS.get(scheme))


@dataclass(frozen=True, slots=True)
class _Pattern:
    scheme: str
    suffix: str
    """``.example.com`` for ``*.example.com``; the whole host for an exact entry."""
    wildcard: bool
    port: int | None

    def matches(self, origin: Origin) -> bool:
        if origin.scheme != self.scheme or origin.port != self.port:
            return False
        if self.wildcard:
            return origin.host.endswith(self.suffix) and len(origin.host) > len(self.suffix)
        return origin.host == self.suffix


def _compile(entry: str) -> _Pattern:
    wildcard = "://*." in entry
    origin = Origin.parse(entry.replace("://*.", "://", 1) if wildcard else entry)
    if origin is None:
        raise ValueError(f"allowed origin {entry!r} is not scheme://host[:port] or scheme://*.domain[:port]")
    suffix = f".{origin.host}" if wildcard else origin.host
    return _Pattern(origin.scheme, suffix, wildcard, origin.port)


class OriginPolicy:
    """The origins a hub accepts (see the module docstring). Raises ``ValueError`` for an
    entry that is neither an origin, a ``scheme://*.domain`` pattern, nor ``"*"``."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        entries = list(allowed)
        self.any = "*" in entries
        self._patterns = [_compile(entry) for entry in entries if entry != "*"]

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether a request with this ``Origin`` header (``None``: absent) and ``Host`` header
        may connect."""
        if origin is None or self.any:
            return True
        parsed = Origin.parse(origin)
        if parsed is None:
            return False
        return _same_origin(parsed, host) or any(p.matches(parsed) for p in self._patterns)


def _same_origin(origin: Origin, host: str | None) -> bool:
    match = _HOST.fullmatch((host or "").strip().lower())
    if match is None:
        return False
    port = int(match["port"]) if match["port"] else DEFAULT_PORTS.get(origin.scheme)
    return match["host"] == origin.host and port == origin.port
