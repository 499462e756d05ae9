"""The event-loop lag reading (ingress/loop_lag.py) on a real event loop."""

from __future__ import annotations

import asyncio
import time

from ingress.loop_lag import LoopLag


def test_the_reading_rises_at_once_and_falls_back_gradually():
    lag = LoopLag(decay=0.5)
    lag.observe(0.4)
    assert lag.lag_s == 0.4
    lag.observe(0.0)
    assert lag.lag_s == 0.2
    lag.observe(-0.001)  # early by a hair: on time
    assert lag.lag_s == 0.1
    lag.observe(0.3)
    assert lag.lag_s == 0.3


async def test_a_blocked_loop_is_seen_late_and_then_on_time_again():
    lag = LoopLag(interval_s=0.01)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        assert lag.lag_s < 0.1
        time.sleep(0.3)  # noqa: ASYNC251 -- blocking on purpose: the loop cannot run its timer
        await asyncio.sleep(0.02)
        assert lag.lag_s >= 0.2  # seen 0.3 s late, less at most one on-time tick's decay
        await asyncio.sleep(0.5)  # on time again: the reading decays back
        assert lag.lag_s < 0.05
    finally:
        await lag.stop()
