"""The hub tunes the garbage collector at start (``tune_gc``), unless told not to."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import asyncio, gc
from fastapi_realtime import Hub, HubSettings

async def main():
    async with Hub(HubSettings(tune_gc={tune})):
        print(gc.get_threshold()[0], gc.get_freeze_count() > 0)

asyncio.run(main())
"""


@pytest.mark.parametrize(("tune", "expected"), [(True, "10000 True"), (False, "700 False")])
def test_the_hub_tunes_the_collector_unless_told_not_to(tune: bool, expected: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(tune=tune)], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == expected
