"""Typed requests and replies of the HTTP server API, in Centrifugo's shapes.

Requests refuse fields they do not know (error 107 ``not supported by this server``), so an
option this server does not implement is never silently ignored. The reply models document
the replies in OpenAPI; the replies themselves are encoded directly.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..hub import NodeInfo

MAX_INT = 2**63 - 1
"""Largest offset or time a request may carry (what a signed 64-bit field holds)."""

# -- request models ---------------------------------------------------------------------


class APIRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublishRequest(APIRequest):
    """Publish ``data`` (or ``b64data``) into ``channel``."""

    channel: str
    data: Any = Field(None, description="Any JSON value; required unless b64data is given.")
    b64data: str | None = Field(
        None,
        description="Base64 of the payload, as Centrifugo accepts it. Connections here speak JSON, which "
        "cannot carry binary: the decoded bytes must be JSON text (else error 107).",
    )
    skip_history: bool = Field(False, description="Deliver only; keep nothing in history (offset 0).")
    tags: dict[str, str] | None = Field(None, description="Delivered with the publication.")
    idempotency_key: str | None = Field(
        None,
        description="A publish repeating this key for the channel within idempotency_window seconds "
        "is not delivered again and returns the first one's result.",
    )


class BroadcastRequest(APIRequest):
    """Publish the same payload into each of ``channels``."""

    channels: list[str]
    data: Any = Field(None, description="Any JSON value; required unless b64data is given.")
    b64data: str | None = Field(None, description="As in publish.")
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str | None = Field(None, description="As in publish, per channel.")


class SubscribeRequest(APIRequest):
    """Subscribe the connections of ``user`` (only ``client`` if given) to ``channel``."""

    user: str
    channel: str
    client: str | None = None


class UnsubscribeRequest(SubscribeRequest):
    """Unsubscribe the connections of ``user`` (only ``client`` if given) from ``channel``."""


class DisconnectObject(APIRequest):
    """A close code (3000-4999; 0: 3503 ``force disconnect``) and reason (at most 123 bytes)."""

    code: int = 0
    reason: str = ""


class DisconnectRequest(APIRequest):
    """Disconnect the connections of ``user`` (only ``client``; none in ``whitelist``)."""

    user: str
    client: str | None = None
    whitelist: list[str] | None = None
    disconnect: DisconnectObject | None = None


class RefreshRequest(APIRequest):
    """Expire the connections of ``user`` now, or give them a new expiry time."""

    user: str
    client: str | None = None
    expired: bool = Field(False, description="Close them now with 3005.")
    expire_at: int = Field(0, ge=0, le=MAX_INT, description="Their new expiry, Unix seconds (0: never).")


class ChannelRequest(APIRequest):
    """A request naming one channel."""

    channel: str


class StreamPositionModel(BaseModel):
    """A stream position: the offset of a publication and the stream's epoch."""

    offset: int = Field(0, ge=0, le=MAX_INT)
    epoch: str = ""


class HistoryRequest(APIRequest):
    """Read the history of ``channel``."""

    channel: str
    limit: int | None = Field(None, description="How many publications (unset or 0: none, only the position; -1: all).")
    since: StreamPositionModel | None = Field(None, description="Only publications after this position.")
    reverse: bool = Field(False, description="Newest first.")


class ChannelsRequest(APIRequest):
    """List the channels with subscribers."""

    pattern: str | None = Field(None, description="Keep names matching it: shell-style *, ?, [...].")


class InfoRequest(APIRequest):
    """No parameters."""


class BatchRequest(APIRequest):
    """Run several commands in one request."""

    commands: list[dict[str, Any]] = Field(
        description='Each an object with one key, the method, and its request: {"publish": {"channel": ...}}.'
    )
    parallel: bool = Field(False, description="Run the commands concurrently (replies stay in order).")


# -- response models (for the OpenAPI docs; replies are encoded directly) ---------------

R = TypeVar("R")


class Error(BaseModel):
    """A Centrifugo error: a code of the client protocol's table and a message."""

    code: int
    message: str


class ErrorReply(BaseModel):
    """A request refused as a whole (HTTP 400, 401 or 413)."""

    error: Error


class Reply(BaseModel, Generic[R]):
    """Either ``result`` or ``error``."""

    error: Error | None = None
    result: R | None = None


class PublishResult(BaseModel):
    offset: int = 0
    epoch: str = ""


class BroadcastResult(BaseModel):
    responses: list[Reply[PublishResult]]


class EmptyResult(BaseModel):
    pass


class ClientInfoModel(BaseModel):
    user: str
    client: str
    conn_info: Any = None
    chan_info: Any = None


class PresenceResult(BaseModel):
    presence: dict[str, ClientInfoModel]


class PresenceStatsResult(BaseModel):
    num_clients: int
    num_users: int


class PublicationModel(BaseModel):
    data: Any
    offset: int = 0
    tags: dict[str, str] | None = None
    info: ClientInfoModel | None = None


class HistoryResult(BaseModel):
    publications: list[PublicationModel]
    offset: int = 0
    epoch: str = ""


class ChannelInfoModel(BaseModel):
    num_clients: int


class ChannelsResult(BaseModel):
    channels: dict[str, ChannelInfoModel]


class InfoResult(BaseModel):
    nodes: list[NodeInfo]


class BatchResponse(BaseModel):
    replies: list[dict[str, Any]] = Field(
        description='One per command, in order: {"<method>": result} or {"error": {...}}.'
    )
