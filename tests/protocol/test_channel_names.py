"""parse_channel: names, namespaces, private and user-limited channels."""

from __future__ import annotations

import pytest

from fastapi_realtime.channels import parse_channel
from fastapi_realtime.protocol import ErrorCode, ReplyError
from fastapi_realtime.settings import ChannelOptions, HubSettings

DEFAULT = ChannelOptions()
CHAT = ChannelOptions(history_size=10, presence=True)
NEWS = ChannelOptions(history_size=1)
SETTINGS = HubSettings(namespaces={"": DEFAULT, "chat": CHAT, "news": NEWS}, channel_max_length=32)


def refused(name: str, settings: HubSettings = SETTINGS) -> ReplyError:
    with pytest.raises(ReplyError) as info:
        parse_channel(name, settings)
    return info.value


def test_channel_without_colon_is_in_the_default_namespace() -> None:
    ch = parse_channel("lobby", SETTINGS)
    assert (ch.name, ch.namespace, ch.options, ch.private, ch.users) == ("lobby", "", DEFAULT, False, None)


@pytest.mark.parametrize(("name", "namespace", "options"), [("chat:42", "chat", CHAT), ("news:a:b", "news", NEWS)])
def test_namespace_is_the_part_before_the_first_colon(name: str, namespace: str, options: ChannelOptions) -> None:
    ch = parse_channel(name, SETTINGS)
    assert (ch.namespace, ch.options) == (namespace, options)


def test_leading_colon_means_the_default_namespace() -> None:
    assert parse_channel(":x", SETTINGS).namespace == ""


def test_unknown_namespace_is_error_102() -> None:
    err = refused("sports:1")
    assert (err.code, err.message) == (ErrorCode.UNKNOWN_CHANNEL, "unknown channel")


def test_default_namespace_can_be_left_unconfigured() -> None:
    settings = HubSettings(namespaces={"chat": CHAT})
    assert refused("lobby", settings).code == ErrorCode.UNKNOWN_CHANNEL
    assert parse_channel("chat:1", settings).options == CHAT


def test_empty_name_is_error_107() -> None:
    err = refused("")
    assert (err.code, err.message) == (ErrorCode.BAD_REQUEST, "channel required")


def test_name_at_the_length_limit_is_accepted_and_longer_is_107() -> None:
    assert parse_channel("a" * 32, SETTINGS).name == "a" * 32
    err = refused("a" * 33)
    assert err.code == ErrorCode.BAD_REQUEST
    assert "32" in err.message


@pytest.mark.parametrize(
    "name", ["with space", "tab\t", "new\nline", 'quote"', "back\\slash", "é", "日本", "a<b>", "ch?q", "a%20", "\x00"]
)
def test_bad_characters_are_107(name: str) -> None:
    assert refused(name).code == ErrorCode.BAD_REQUEST


def test_every_allowed_character_is_accepted() -> None:
    assert parse_channel("aZ09_-=@.,;!+/*~", SETTINGS).name == "aZ09_-=@.,;!+/*~"


def test_length_is_checked_before_characters() -> None:
    assert "32" in refused("é" * 40).message


@pytest.mark.parametrize(("name", "namespace"), [("$secret", ""), ("$chat:room", "chat")])
def test_dollar_prefix_marks_a_private_channel(name: str, namespace: str) -> None:
    ch = parse_channel(name, SETTINGS)
    assert ch.private
    assert ch.namespace == namespace


def test_private_channel_in_unknown_namespace_is_102() -> None:
    assert refused("$sports:1").code == ErrorCode.UNKNOWN_CHANNEL


def test_hash_limits_the_channel_to_the_listed_users() -> None:
    ch = parse_channel("chat:dialog#42,43", SETTINGS)
    assert ch.users == frozenset({"42", "43"})
    assert ch.allows_user("42")
    assert ch.allows_user("43")
    assert not ch.allows_user("44")
    assert not ch.allows_user("")


def test_hash_with_a_single_user() -> None:
    ch = parse_channel("#42", SETTINGS)
    assert (ch.namespace, ch.users) == ("", frozenset({"42"}))


def test_empty_user_list_allows_nobody() -> None:
    ch = parse_channel("chat:x#", SETTINGS)
    assert ch.users == frozenset()
    assert not ch.allows_user("")


def test_channel_without_hash_allows_everyone() -> None:
    assert parse_channel("chat:x", SETTINGS).allows_user("anyone")


def test_private_user_limited_channel() -> None:
    ch = parse_channel("$chat:x#1", SETTINGS)
    assert (ch.private, ch.namespace, ch.users) == (True, "chat", frozenset({"1"}))
