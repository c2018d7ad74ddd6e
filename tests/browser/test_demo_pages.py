"""The demo in a real browser: chat, presence, recovery after going offline, after leaving and
reloading the page, and after a server restart; the ticker fed by the server's own task.

Each scenario uses separate browser contexts (separate tabs of separate people). Assertions on
the message list compare the whole list, so a message shown twice fails the test.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest

from fastapi_realtime import Hub, HubSettings
from fastapi_realtime.brokers.redis import RedisBroker
from fastapi_realtime.server.demo import DEMO_NAMESPACES

from .demo_harness import ARTIFACTS, WAIT_MS, DemoServer, running_demo

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page
    from redis_servers import RedisServer

pytestmark = pytest.mark.timeout(60)


class Tab:
    """One person's chat tab, and the page errors it raised."""

    def __init__(self, page: Page, nick: str) -> None:
        self.page = page
        self.nick = nick
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    async def expect_messages(self, *texts: str) -> None:
        from playwright.async_api import expect

        await expect(self.page.locator("#messages .msg .text")).to_have_text(list(texts), timeout=WAIT_MS)

    async def expect_presence(self, *users: str) -> None:
        from playwright.async_api import expect

        await expect(self.page.locator("#presence li")).to_have_text(list(users), timeout=WAIT_MS)

    async def expect_state(self, state: str) -> None:
        from playwright.async_api import expect

        await expect(self.page.locator("#status")).to_have_attribute("data-state", state, timeout=WAIT_MS)

    async def expect_recovery(self, outcome: str) -> None:
        from playwright.async_api import expect

        await expect(self.page.locator("body")).to_have_attribute("data-recovery", outcome, timeout=WAIT_MS)

    async def say(self, text: str) -> None:
        """Send ``text`` and wait until this tab shows it back (it went through the server)."""
        from playwright.async_api import expect

        await self.page.fill("#text", text)
        await self.page.press("#text", "Enter")
        await expect(self.page.locator("#messages .msg .text").last).to_have_text(text, timeout=WAIT_MS)

    async def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=ARTIFACTS / f"{name}.png")


async def open_chat(browser: Browser, server: DemoServer, nick: str, room: str = "lobby") -> Tab:
    context = await browser.new_context(viewport={"width": 1000, "height": 600})
    tab = Tab(await context.new_page(), nick)
    await tab.page.goto(server.url + "/")
    await tab.page.fill("#nick", nick)
    await tab.page.fill("#room", room)
    await tab.page.click("#join button")
    await tab.expect_state("connected")
    await tab.expect_recovery("fresh")
    return tab


async def ada_and_bob_saw(browser: Browser, server: DemoServer, text: str) -> tuple[Tab, Tab]:
    """Ada and Bob in the lobby, after Ada said ``text`` and Bob saw it."""
    ada = await open_chat(browser, server, "ada")
    bob = await open_chat(browser, server, "bob")
    await ada.say(text)
    await bob.expect_messages(text)
    return ada, bob


def assert_no_page_errors(*tabs: Tab) -> None:
    for tab in tabs:
        assert not tab.errors, f"{tab.nick}'s page raised: {tab.errors}"


async def test_two_pages_chat_with_presence_and_history_on_join(browser: Browser, demo_server: DemoServer) -> None:
    ada = await open_chat(browser, demo_server, "ada")
    bob = await open_chat(browser, demo_server, "bob")
    await ada.expect_presence("ada", "bob")
    await bob.expect_presence("ada", "bob")
    await ada.page.locator("#messages .notice", has_text="bob joined").wait_for(timeout=WAIT_MS)

    await ada.say("hello bob")
    await bob.say("hi ada")
    for tab in (ada, bob):
        await tab.expect_messages("hello bob", "hi ada")
    assert await ada.page.locator("#messages .msg .nick").all_text_contents() == ["ada", "bob"]
    await ada.screenshot("chat-two-pages")

    cyd = await open_chat(browser, demo_server, "cyd")  # joins late: the room's history is shown
    await cyd.expect_messages("hello bob", "hi ada")

    await ada.page.click("#rooms a[data-room=random]")  # another room: its own messages and people
    await ada.expect_presence("ada")
    await ada.say("anyone in random?")
    await ada.expect_messages("anyone in random?")
    await ada.page.click("#rooms a[data-room=lobby]")  # back: the lobby as it was, once
    await ada.expect_presence("ada", "bob", "cyd")
    await ada.expect_messages("hello bob", "hi ada")
    await bob.expect_messages("hello bob", "hi ada")
    await cyd.page.context.close()
    await bob.page.context.close()
    await ada.expect_presence("ada")
    await ada.page.locator("#messages .notice", has_text="bob left").wait_for(timeout=WAIT_MS)
    assert_no_page_errors(ada, bob, cyd)


async def test_a_page_that_went_offline_shows_every_missed_message_once(
    browser: Browser, demo_server: DemoServer
) -> None:
    ada, bob = await ada_and_bob_saw(browser, demo_server, "before")

    await bob.page.context.set_offline(True)
    await bob.expect_state("reconnecting")
    missed = [f"while bob was offline {n}" for n in range(1, 4)]
    for text in missed:
        await ada.say(text)
    await bob.screenshot("offline-reconnecting")

    await bob.page.context.set_offline(False)
    await bob.expect_state("connected")
    await bob.expect_recovery("recovered")
    await bob.expect_messages("before", *missed)
    await ada.say("after")
    await bob.expect_messages("before", *missed, "after")
    await bob.screenshot("offline-recovered")
    assert_no_page_errors(ada, bob)


async def test_leaving_and_reloading_the_page_recovers_what_was_missed_once(
    browser: Browser, demo_server: DemoServer
) -> None:
    ada, bob = await ada_and_bob_saw(browser, demo_server, "seen")

    await bob.page.goto("about:blank")  # bob leaves; the tab's sessionStorage keeps his position
    missed = [f"while bob was away {n}" for n in range(1, 4)]
    for text in missed:
        await ada.say(text)
    await bob.page.goto(demo_server.url + "/")
    await bob.expect_state("connected")
    await bob.expect_recovery("recovered")
    await bob.expect_messages("seen", *missed)
    await bob.page.locator("#messages .notice.missed").wait_for(timeout=WAIT_MS)
    await bob.screenshot("reload-recovered")

    await bob.page.reload()  # nothing missed this time: the same messages, once each
    await bob.expect_recovery("recovered")
    await bob.expect_messages("seen", *missed)
    assert await bob.page.locator("#messages .notice.missed").count() == 0
    await ada.say("after")
    await bob.expect_messages("seen", *missed, "after")
    assert_no_page_errors(ada, bob)


async def test_pages_survive_a_server_restart(browser: Browser, demo_server: DemoServer) -> None:
    """With the memory broker a restart loses the history: the pages reconnect by themselves,
    say they could not recover, and chat on (a Redis broker would recover them instead)."""
    ada, bob = await ada_and_bob_saw(browser, demo_server, "before the restart")

    await demo_server.stop()
    for tab in (ada, bob):
        await tab.expect_state("reconnecting")
        # SIGTERM tells clients 3001 shutdown: a code the SDK reconnects after (below 3500)
        assert await tab.page.locator("#status").get_attribute("data-lost-code") == "3001"
    await ada.screenshot("restart-reconnecting")
    await demo_server.start()

    for tab in (ada, bob):
        await tab.expect_state("connected")
        await tab.expect_recovery("lost")
        await tab.page.locator("#messages .notice.lost").wait_for(timeout=WAIT_MS)
        await tab.expect_presence("ada", "bob")
    await bob.say("after the restart")
    await ada.expect_messages("before the restart", "after the restart")
    await ada.screenshot("restart-reconnected")
    assert_no_page_errors(ada, bob)


async def test_with_redis_pages_recover_what_was_published_while_the_server_restarted(
    browser: Browser, redis_server: RedisServer
) -> None:
    """With a Redis broker the history outlives the server process: after the restart the pages
    recover, including a message published (by another process) while the server was down."""
    prefix = f"demo-{secrets.token_hex(4)}"
    async with running_demo("--broker", redis_server.url, "--set", f"redis.prefix={prefix}") as server:
        ada, bob = await ada_and_bob_saw(browser, server, "before the restart")
        await server.stop()
        for tab in (ada, bob):
            await tab.expect_state("reconnecting")
        async with Hub(
            HubSettings(namespaces=DEMO_NAMESPACES), broker=RedisBroker(redis_server.url, prefix=prefix)
        ) as hub:
            await hub.publish("chat:lobby", {"text": "published while the server was down"})
        await server.start()

        for tab in (ada, bob):
            await tab.expect_state("connected")
            await tab.expect_recovery("recovered")
            await tab.expect_messages("before the restart", "published while the server was down")
        await bob.say("after the restart")
        await ada.expect_messages("before the restart", "published while the server was down", "after the restart")
        assert await ada.page.locator("#messages .notice.lost").count() == 0
        await ada.screenshot("restart-redis-recovered")
        assert_no_page_errors(ada, bob)


async def test_the_ticker_page_shows_prices_from_the_server_task(browser: Browser, demo_server: DemoServer) -> None:
    from playwright.async_api import expect

    page = await (await browser.new_context()).new_page()
    await page.goto(demo_server.url + "/ticker")
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected", timeout=WAIT_MS)
    await expect(page.locator("#quotes tbody tr")).to_have_count(4, timeout=WAIT_MS)
    first = await page.locator("#seq").text_content()
    await expect(page.locator("#seq")).not_to_have_text(first or "-", timeout=WAIT_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "ticker.png")
