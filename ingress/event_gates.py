"""Throttles for socket events that fan out or get stored: typing indicators and read marks.

Both work on this node's event loop, keyed by (room, user): a client that floods gets the same
answer as before, but watchers and the ledger see a bounded trickle. Nothing here is shared
between nodes: a user's sockets on two nodes are throttled on each (and capped per node).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Tasks:
    """Background sends started by timers; held so they are not collected mid-flight."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def spawn(self, what: str, job: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await job
            except Exception as exc:
                log.warning("event_gate.send_failed", what=what, error=repr(exc))

        task = asyncio.get_running_loop().create_task(run())
        self._running.add(task)
        task.add_done_callback(self._running.discard)


@dataclass(slots=True)
class _Typing:
    shown: bool  # what watchers last got
    sent_at: dict[bool, float] = field(default_factory=dict)  # loop time of the last broadcast per state
    wanted: bool = False  # what the user last said
    about: Any = None  # what ``send`` needs besides the key (the user's display name)
    timer: asyncio.TimerHandle | None = None


class TypingGate(Generic[K]):
    """At most one broadcast per key and state per interval, a stop after a shown start at once.

    ``offer`` says whether to broadcast now. A start held back (a start went out less than an
    interval ago) is sent by ``send`` when the interval ends, if the user has not stopped since;
    an entry lives one interval after its last broadcast, then the key is free again.
    """

    def __init__(self, interval_s: float, send: Callable[[K, bool, Any], Awaitable[None]]) -> None:
        self._interval = interval_s
        self._send = send
        self._entries: dict[K, _Typing] = {}
        self._tasks = _Tasks()

    def offer(self, key: K, typing: bool, about: Any = None) -> bool:
        now = asyncio.get_running_loop().time()
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = entry = _Typing(shown=typing, wanted=typing, about=about)
            self._shown(key, entry, typing, now)
            return True
        entry.wanted, entry.about = typing, about
        if (typing != entry.shown and not typing) or now - entry.sent_at.get(typing, -self._interval) >= self._interval:
            self._shown(key, entry, typing, now)
            return True
        return False  # a repeat, or a start too soon after the last: the timer may send it

    def forget(self, key: K) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and entry.timer is not None:
            entry.timer.cancel()

    def __len__(self) -> int:
        return len(self._entries)

    def _shown(self, key: K, entry: _Typing, typing: bool, now: float) -> None:
        entry.shown, entry.sent_at[typing] = typing, now
        if entry.timer is not None:
            entry.timer.cancel()
        entry.timer = asyncio.get_running_loop().call_later(self._interval, self._interval_over, key)

    def _interval_over(self, key: K) -> None:
        entry = self._entries.get(key)
        if entry is None:
            return
        entry.timer = None
        if entry.wanted == entry.shown:
            del self._entries[key]  # quiet for a whole interval: nothing to remember
            return
        self._shown(key, entry, entry.wanted, asyncio.get_running_loop().time())
        self._tasks.spawn("typing", self._send(key, entry.wanted, entry.about))


@dataclass(slots=True)
class _Slot(Generic[V]):
    timer: asyncio.TimerHandle
    pending: V | None = None


class Coalescer(Generic[K, V]):
    """At most one ``flush`` per key per interval: the first value at once (by the caller, when
    ``offer`` says so), values offered during the interval merged (``keep`` picks which) and
    flushed once when it ends, which starts the next interval."""

    def __init__(self, interval_s: float, flush: Callable[[K, V], Awaitable[None]], keep: Callable[[V, V], V]) -> None:
        self._interval = interval_s
        self._flush = flush
        self._keep = keep
        self._slots: dict[K, _Slot[V]] = {}
        self._tasks = _Tasks()

    def offer(self, key: K, value: V) -> bool:
        """True: the caller stores ``value`` now. False: it is held for the end of the interval."""
        slot = self._slots.get(key)
        if slot is None:
            self._open(key)
            return True
        slot.pending = value if slot.pending is None else self._keep(slot.pending, value)
        return False

    def release(self, key: K) -> None:
        """The value ``offer`` let through could not be stored after all: free the key again."""
        slot = self._slots.get(key)
        if slot is not None and slot.pending is None:
            slot.timer.cancel()
            del self._slots[key]

    def __len__(self) -> int:
        return len(self._slots)

    async def flush_all(self) -> None:
        """Flush every held value now (a node shutting down); a failed flush is logged, not raised."""
        slots, self._slots = self._slots, {}
        for key, slot in slots.items():
            slot.timer.cancel()
            if slot.pending is not None:
                try:
                    await self._flush(key, slot.pending)
                except Exception as exc:
                    log.warning("event_gate.flush_failed", error=repr(exc))

    def _open(self, key: K) -> None:
        timer = asyncio.get_running_loop().call_later(self._interval, self._interval_over, key)
        self._slots[key] = _Slot(timer)

    def _interval_over(self, key: K) -> None:
        slot = self._slots.pop(key, None)
        if slot is None or slot.pending is None:
            return
        self._open(key)
        self._tasks.spawn("coalesced", self._flush(key, slot.pending))
