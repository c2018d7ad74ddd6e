"""Browser end-to-end tests of the demo: headless Chromium (Debian's ``chromium``) driven by
Playwright for Python, against ``python -m fastapi_realtime serve --demo`` in a subprocess.

Without Chromium (or Playwright) the tests skip with the reason, except under ``CI=true`` where
they fail: CI installs both (``.ci/run``). Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from .demo_harness import CHROMIUM, DemoServer, require_browser, running_demo

if TYPE_CHECKING:
    from playwright.async_api import Browser


@pytest.fixture
async def demo_server() -> AsyncIterator[DemoServer]:
    """A running demo server; the test may stop and start it again (same port)."""
    require_browser()
    async with running_demo() as server:
        yield server


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (the system's, no Playwright browser download)."""
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()
