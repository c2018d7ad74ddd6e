"""The HTTP side of the server API: the key, the body limit, the error shapes, the routes."""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, HTTPException, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from starlette.types import Scope

from ..hub import Node
from ..protocol.codes import ErrorCode
from .methods import METHODS, Method, describe, error, reply, run_batch
from .models import BatchRequest, BatchResponse, ErrorReply, Reply

# -- HTTP: the key, the body limit, the error shapes ------------------------------------


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


class _BodyTooLarge(HTTPException):
    """Raised while FastAPI reads the body; an ``HTTPException`` so that FastAPI lets it through."""

    def __init__(self) -> None:
        super().__init__(413)


class _LimitedRequest(Request):
    """A request whose body is read up to ``max_bytes`` (the FastAPI-documented way to
    customise how a route reads its body)."""

    max_bytes = 0

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise _BodyTooLarge
            chunks, size = [], 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > self.max_bytes:
                    raise _BodyTooLarge
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        """Strict JSON (orjson): ``NaN``, ``1e999``, lone surrogates and nesting past 1024
        levels are errors here, where Python's ``json`` would let them through or crash."""
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


def _as_json(scope: Scope) -> Scope:
    """``scope`` with ``Content-Type: application/json``: like Centrifugo, the API reads every
    body as JSON, whatever the client said (``curl -d`` says it is a form)."""
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


@dataclass(frozen=True, slots=True)
class _Guard:
    key: bytes
    max_body_bytes: int

    def authorized(self, request: Request) -> bool:
        """``X-API-Key: <key>`` or ``Authorization: apikey <key>``, compared in constant time."""
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            given = value.strip() if scheme.lower() == "apikey" else None
        return given is not None and hmac.compare_digest(given.encode(), self.key)


class _GuardedRoute(APIRoute):
    """Checks the key before anything else, limits the body, and answers validation errors
    in Centrifugo's shape instead of FastAPI's 422."""

    guard: _Guard
    whole_request_errors = False
    """Whether every validation error is the request's (HTTP 400), as in ``batch``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        guard, whole = self.guard, self.whole_request_errors

        async def guarded(request: Request) -> Response:
            if not guard.authorized(request):
                return _json(error(ErrorCode.UNAUTHORIZED, "unauthorized: missing or wrong API key"), 401)
            limited = _LimitedRequest(_as_json(request.scope), request.receive)
            limited.max_bytes = guard.max_body_bytes
            try:
                return await handler(limited)
            except _BodyTooLarge:
                message = f"bad request: body larger than {guard.max_body_bytes} bytes"
                return _json(error(ErrorCode.BAD_REQUEST, message), 413)
            except HTTPException as exc:  # FastAPI could not read the body at all
                if exc.status_code != 400:
                    raise
                return _json(error(ErrorCode.BAD_REQUEST, f"bad request: {exc.detail}"), 400)
            except RequestValidationError as exc:
                errors = list(exc.errors())
                undecodable = whole or any(e["type"] == "json_invalid" or len(e["loc"]) < 2 for e in errors)
                return _json(error(ErrorCode.BAD_REQUEST, describe(errors, 1)), 400 if undecodable else 200)

        return guarded


def _endpoint(hub: Node, name: str, method: Method) -> Callable[..., Awaitable[Response]]:
    async def endpoint(body: Any) -> Response:
        return _json(await reply(method.call(hub, body or method.request())))

    optional = not any(f.is_required() for f in method.request.model_fields.values())
    default = Body(None) if optional else Body(...)
    param = inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=method.request, default=default)
    endpoint.__signature__ = inspect.Signature([param], return_annotation=Response)  # type: ignore[attr-defined]
    endpoint.__name__ = f"api_{name}"
    return endpoint


_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="Or: Authorization: apikey <key>")


def make_router(hub: Node, *, api_key: str, prefix: str = "/api") -> APIRouter:
    """The server API router for ``hub``, protected by ``api_key`` (see the module docstring)."""
    if not api_key:
        raise ValueError("api_key must not be empty")
    guard = _Guard(api_key.encode(), hub.settings.api_max_body_bytes)
    route_class: type[_GuardedRoute] = type("APIKeyRoute", (_GuardedRoute,), {"guard": guard})
    batch_class: type[_GuardedRoute] = type("APIKeyBatchRoute", (route_class,), {"whole_request_errors": True})
    # The scheme only documents the key in OpenAPI; the route class enforces it, before the body is read.
    router = APIRouter(
        prefix=prefix,
        route_class=route_class,
        tags=["server API"],
        dependencies=[Security(_key_scheme)],
        responses={
            400: {"model": ErrorReply, "description": "The body is not a JSON object (error 107)"},
            401: {"model": ErrorReply, "description": "Missing or wrong API key; nothing was done"},
            413: {"model": ErrorReply, "description": "The body is over api_max_body_bytes (error 107)"},
        },
    )
    for name, method in METHODS.items():
        router.add_api_route(
            f"/{name}",
            _endpoint(hub, name, method),
            methods=["POST"],
            response_model=Reply[method.result],  # type: ignore[name-defined]
            summary=method.summary,
            name=f"api_{name}",
        )

    async def batch_endpoint(body: Annotated[BatchRequest, Body()]) -> Response:
        if len(body.commands) > hub.settings.api_max_commands:
            message = f"bad request: more than {hub.settings.api_max_commands} commands"
            return _json(error(ErrorCode.BAD_REQUEST, message), 400)
        return _json({"replies": await run_batch(hub, body)})

    router.add_api_route(
        "/batch",
        batch_endpoint,
        methods=["POST"],
        response_model=BatchResponse,
        summary="Several commands in one request",
        name="api_batch",
        route_class_override=batch_class,
    )
    return router
