"""The code tables: messages, temporariness, reasons and the reconnect rule."""

from __future__ import annotations

import pytest

from fastapi_realtime.protocol import Disconnect, DisconnectCode, ErrorCode, ReplyError, UnsubscribeCode
from fastapi_realtime.protocol.codes import reconnect_allowed
from fastapi_realtime.protocol.errors import RealtimeError

# -- ErrorCode -----------------------------------------------------------------------


def test_error_codes_match_the_protocol_table() -> None:
    assert {c.name: c.value for c in ErrorCode} == {
        "INTERNAL": 100,
        "UNAUTHORIZED": 101,
        "UNKNOWN_CHANNEL": 102,
        "PERMISSION_DENIED": 103,
        "METHOD_NOT_FOUND": 104,
        "ALREADY_SUBSCRIBED": 105,
        "LIMIT_EXCEEDED": 106,
        "BAD_REQUEST": 107,
        "NOT_AVAILABLE": 108,
        "TOKEN_EXPIRED": 109,
        "EXPIRED": 110,
        "TOO_MANY_REQUESTS": 111,
        "UNRECOVERABLE_POSITION": 112,
    }


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (ErrorCode.INTERNAL, "internal"),
        (ErrorCode.UNAUTHORIZED, "unauthorized"),
        (ErrorCode.UNKNOWN_CHANNEL, "unknown channel"),
        (ErrorCode.PERMISSION_DENIED, "permission denied"),
        (ErrorCode.METHOD_NOT_FOUND, "method not found"),
        (ErrorCode.ALREADY_SUBSCRIBED, "already subscribed"),
        (ErrorCode.LIMIT_EXCEEDED, "limit exceeded"),
        (ErrorCode.BAD_REQUEST, "bad request"),
        (ErrorCode.NOT_AVAILABLE, "not available"),
        (ErrorCode.TOKEN_EXPIRED, "token expired"),
        (ErrorCode.EXPIRED, "expired"),
        (ErrorCode.TOO_MANY_REQUESTS, "too many requests"),
        (ErrorCode.UNRECOVERABLE_POSITION, "unrecoverable position"),
    ],
)
def test_error_code_messages(code: ErrorCode, message: str) -> None:
    assert code.message == message


def test_only_internal_and_too_many_requests_are_temporary() -> None:
    assert {c for c in ErrorCode if c.temporary} == {ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS}


def test_reply_error_defaults_come_from_the_table() -> None:
    err = ReplyError(111)
    assert (err.code, err.message, err.temporary) == (111, "too many requests", True)
    assert type(err.code) is int
    assert str(err) == "111: too many requests"


def test_reply_error_with_application_code() -> None:
    err = ReplyError(4000)
    assert (err.code, err.message, err.temporary) == (4000, "error", False)
    assert ReplyError(4000, "nope", temporary=True).temporary


def test_error_hierarchy() -> None:
    assert issubclass(ReplyError, RealtimeError)
    assert issubclass(Disconnect, RealtimeError)
    assert not issubclass(Disconnect, ReplyError)


# -- DisconnectCode ------------------------------------------------------------------


@pytest.mark.parametrize("code", list(DisconnectCode))
def test_disconnect_reasons_fit_a_close_frame(code: DisconnectCode) -> None:
    assert code.reason
    assert len(code.reason.encode()) < 123


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (3001, "shutdown"),
        (3004, "internal server error"),
        (3008, "slow"),
        (3012, "no pong"),
        (3013, "too many requests"),
        (3500, "invalid token"),
        (3501, "bad request"),
        (3504, "connection limit"),
        (3505, "channel limit"),
        (3506, "inappropriate protocol"),
        (1009, "message too big"),
    ],
)
def test_disconnect_reasons(code: int, reason: str) -> None:
    assert DisconnectCode(code).reason == reason
    assert Disconnect(code).reason == reason


@pytest.mark.parametrize("code", list(DisconnectCode))
def test_disconnect_reconnect_follows_the_code_range(code: DisconnectCode) -> None:
    expected = 3000 <= code < 3500
    assert code.reconnect is expected


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (1000, True),
        (1001, True),
        (1006, True),
        (1009, False),
        (1011, True),
        (3000, True),
        (3499, True),
        (3500, False),
        (3999, False),
        (4000, True),
        (4499, True),
        (4500, False),
        (4999, False),
        (5000, True),
    ],
)
def test_reconnect_rule_for_any_code(code: int, reconnect: bool) -> None:
    assert reconnect_allowed(code) is reconnect


def test_disconnect_with_application_code() -> None:
    exc = Disconnect(4501)
    assert (exc.code, exc.reason) == (4501, "disconnect")
    assert Disconnect(4000, "kicked").reason == "kicked"


# -- UnsubscribeCode -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (UnsubscribeCode.SERVER, "server unsubscribe"),
        (UnsubscribeCode.INSUFFICIENT_STATE, "insufficient state"),
        (UnsubscribeCode.EXPIRED, "subscription expired"),
    ],
)
def test_unsubscribe_codes(code: UnsubscribeCode, reason: str) -> None:
    assert code.reason == reason


def test_unsubscribe_code_values() -> None:
    assert [int(c) for c in UnsubscribeCode] == [2000, 2500, 2501]
    # Codes >= 2500 make the client resubscribe.
    assert [c >= 2500 for c in UnsubscribeCode] == [False, True, True]
