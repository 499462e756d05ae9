"""The in-flight counter a drain waits on (the e2e test covers the whole drain)."""

from __future__ import annotations

import asyncio

from ingress.shutdown import InFlight


async def test_wait_idle_returns_at_once_when_nothing_runs():
    assert await InFlight().wait_idle(0) is True


async def test_wait_idle_waits_for_every_tracked_handler():
    in_flight = InFlight()
    release = asyncio.Event()

    async def handler() -> None:
        with in_flight.track():
            await release.wait()

    tasks = [asyncio.create_task(handler()) for _ in range(2)]
    await asyncio.sleep(0)
    assert in_flight.running == 2
    assert await in_flight.wait_idle(0.05) is False  # still running: the drain goes on without them
    release.set()
    assert await in_flight.wait_idle(5) is True
    assert in_flight.running == 0
    await asyncio.gather(*tasks)


async def test_a_failing_handler_is_no_longer_counted():
    in_flight = InFlight()
    try:
        with in_flight.track():
            raise ValueError("boom")
    except ValueError:
        pass
    assert in_flight.running == 0 and await in_flight.wait_idle(0) is True
