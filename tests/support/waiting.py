"""Poll an async probe until it gives the expected value."""

from __future__ import annotations

import asyncio
import time


async def wait_until(probe, expected, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await probe()
        if value == expected:
            return value
        await asyncio.sleep(0.2)
    raise TimeoutError(f"still {value!r}, expected {expected!r}")
