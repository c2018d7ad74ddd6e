"""The Centrifuge client protocol, JSON and Protobuf encodings: codes, wire types, decoding and encoding.

Pure code: nothing here performs I/O or imports asyncio, so it is tested with strings and bytes alone.
"""

from .codes import DisconnectCode, ErrorCode, UnsubscribeCode, reconnect_allowed
from .errors import Disconnect, RealtimeError, ReplyError
from .messages import ClientInfo, Publication, RawJSON, StreamPosition, from_raw, to_raw

__all__ = [
    "ClientInfo",
    "Disconnect",
    "DisconnectCode",
    "ErrorCode",
    "Publication",
    "RawJSON",
    "RealtimeError",
    "ReplyError",
    "StreamPosition",
    "UnsubscribeCode",
    "from_raw",
    "reconnect_allowed",
    "to_raw",
]
