"""Joins a streamed reply's pieces so a room gets at most one ``messageDelta`` per interval.

Models stream a piece per token, tens per second per reply; forwarding each one would cost a
Redis publish and a fan-out to every client in the room. The first piece goes out at once (the
reply visibly starts), later ones are held until the interval has passed, and :meth:`flush`
sends the rest before the whole reply is stored. Concatenated, the deltas sent are the text.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable


class DeltaCoalescer:
    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._interval_s = interval_s
        self._clock = clock
        self._pending: list[str] = []
        self._last_sent: float | None = None

    async def add(self, piece: str) -> None:
        self._pending.append(piece)
        if self._last_sent is None or self._clock() - self._last_sent >= self._interval_s:
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._last_sent = self._clock()
        await self._send(text)
