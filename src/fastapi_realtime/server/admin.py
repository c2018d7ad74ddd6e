"""The admin page: live counts, channels with their subscribers and presence, a test publish,
and disconnecting a user. Served by the server itself (no CDN): one HTML page with plain
JavaScript (``static/admin.html``) calling the small JSON endpoints below.

Everything under ``/admin`` is behind HTTP Basic authentication with ``admin_password``
(any user name): without it, 401 and the browser asks for the password. The endpoints that
change something take only ``application/json`` bodies and refuse a cross-site ``Origin``,
so a page elsewhere cannot drive them with the browser's saved credentials.

- ``GET /admin``: the page;
- ``GET /admin/api/overview``: this hub's counts and its channels (subscribers here,
  presence when the namespace keeps it);
- ``POST /admin/api/publish`` ``{"channel": ..., "data": ...}``: publish as the server;
- ``POST /admin/api/disconnect`` ``{"user": ...}``: disconnect every connection of a user, on every hub.
"""

from __future__ import annotations

import dataclasses
import hmac
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, ConfigDict

from ..app import Hub
from ..brokers.base import BrokerError
from ..origins import OriginPolicy
from ..protocol.errors import ReplyError
from ..protocol.messages import from_raw

_basic = HTTPBasic(realm="fastapi-realtime admin", auto_error=False)
_same_origin = OriginPolicy(())


class PublishBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str
    data: Any


class DisconnectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str


def mount_admin(app: FastAPI, hub: Hub, password: str) -> None:
    """Serve the admin page and its endpoints on ``app``, behind ``password``."""
    expected = password.encode()

    async def authorized(
        request: Request, credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)]
    ) -> None:
        if credentials is None or not hmac.compare_digest(credentials.password.encode(), expected):
            raise HTTPException(
                401, "admin password required", {"WWW-Authenticate": 'Basic realm="fastapi-realtime admin"'}
            )
        if request.method == "POST":
            if not _same_origin.allows(request.headers.get("origin"), request.headers.get("host")):
                raise HTTPException(403, "cross-site request refused")
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                raise HTTPException(415, "send application/json")

    router = APIRouter(prefix="/admin", dependencies=[Depends(authorized)], include_in_schema=False)
    page = resources.files(__package__).joinpath("static/admin.html").read_text()

    @router.get("")
    async def admin_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    @router.get("/api/overview")
    async def overview() -> dict[str, Any]:
        channels = []
        for name, subscribers in sorted(hub.channel_counts().items()):
            presence = None
            if hub.channel(name).options.presence:
                try:
                    present = await hub.presence(name)
                except BrokerError:  # the broker is down: counts only
                    present = {}
                presence = [
                    {"client": i.client, "user": i.user, "info": from_raw(i.conn_info)} for i in present.values()
                ]
            channels.append({"name": name, "subscribers": subscribers, "presence": presence})
        return {"node": dataclasses.asdict(hub.info()), "channels": channels}

    @router.post("/api/publish")
    async def publish(body: PublishBody) -> JSONResponse:
        try:
            position = await hub.publish(body.channel, body.data)
        except ReplyError as exc:
            return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=400)
        except BrokerError as exc:
            return JSONResponse({"error": {"code": 100, "message": str(exc)[:200]}}, status_code=503)
        return JSONResponse({"offset": position.offset, "epoch": position.epoch})

    @router.post("/api/disconnect")
    async def disconnect(body: DisconnectBody) -> dict[str, Any]:
        await hub.disconnect(body.user)
        return {}

    app.include_router(router)
