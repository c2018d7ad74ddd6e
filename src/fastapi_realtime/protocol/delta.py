"""Delta compression of publications for subscriptions that negotiated ``delta: "fossil"``. Pure.

The hub sets :attr:`~.messages.Publication.delta_base` to the channel's previous payload; the
fossil delta from it is computed at most once per publication (cached on the publication, as
frames are) and used by every delta subscriber whose last payload was that base.
"""

from __future__ import annotations

from .fossil import create_delta
from .messages import Binary, Publication

FOSSIL = "fossil"
DELTA_TYPES = frozenset({FOSSIL})
"""The delta types this server makes."""

_PATCH_KEY = "delta:fossil"


def fossil_patch(pub: Publication) -> bytes | None:
    """The fossil delta from ``pub.delta_base`` to ``pub.data``; ``None`` when there is no base
    or the delta is not smaller than the payload (the full payload is sent then)."""
    cached = pub.encoded.get(_PATCH_KEY)
    if cached is None:
        base = pub.delta_base
        patch = b"" if base is None else create_delta(bytes(base), bytes(pub.data))
        cached = pub.encoded[_PATCH_KEY] = patch if len(patch) < len(pub.data) else b""
    assert isinstance(cached, bytes)
    return cached or None


def json_text(data: bytes) -> str | None:
    """``data`` as text for a JSON string, or ``None`` when it is not UTF-8 (binary payloads;
    a delta that cuts a character in two)."""
    if isinstance(data, Binary):
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None
