"""How far behind its own work a node's event loop is: the lateness of a timer.

A node at the limit of its CPU keeps reading frames it cannot process in time: every send then
waits in the loop before it is even looked at, and acks and deliveries grow late without bound.
:class:`LoopLag` wakes every ``interval_s`` and measures how late it woke. Past
``SEND_MAX_LOOP_LAG_MS`` a node refuses chat sends with ``overloaded`` (ingress/sockets.py): a
refusal costs a fraction of an accepted send (no publish, no fan-out), so the node catches up and
what it accepts stays timely, and the sender is told the truth: nothing was charged, retry later.

The reading rises at once with a late wake-up and falls back gradually (by ``decay`` of the
difference per on-time wake-up), so one prompt timer in a busy second does not reopen the gate.
"""

from __future__ import annotations

import asyncio
import contextlib


class LoopLag:
    def __init__(self, interval_s: float = 0.05, decay: float = 0.25) -> None:
        self.interval_s = interval_s
        self.decay = decay
        self.lag_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.interval_s)
            self.observe(loop.time() - asked - self.interval_s)

    def observe(self, late_s: float) -> None:
        late_s = max(late_s, 0.0)
        self.lag_s = late_s if late_s >= self.lag_s else self.lag_s + self.decay * (late_s - self.lag_s)
