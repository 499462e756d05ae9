"""How far behind the chat workers are, as one node sees it, and the refusal it gives past a bound.

Every chat send this node publishes is remembered until the workers say it was applied: each
applied chat message and batch publishes a ``commandsApplied`` notice with its messages' ids (to a
Socket.IO room no socket joins; every node reads it, and the node that published the sends
recognizes them). Once ``stalled_count`` sends have waited longer than ``max_age_s``
(``CHAT_BACKLOG_MAX_MS``) for it, or so many wait that a new send would wait longer (their number
over the rate at which the workers answer this node's sends), new sends are refused before
anything is published, with ``overloaded`` and a ``retryAfterMs`` of the time the excess takes to
drain (at least the bound): delivery stays within about the bound under overload instead of
growing with the queue, and "nothing was charged" is true. A few sends that wait long on their
own (a command being retried, one that failed closed) do not stop the others.

The bound applies from the node's start, whether or not it has heard from the workers yet: a node
started while the pool is down or still booting refuses past the bound like any other. A
send nobody answers is forgotten after ``forget_after_s``, and after the node's Redis subscription
was interrupted, every send waiting then is forgotten: its notice may have been lost meanwhile.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from ingress.rejections import Rejected, overloaded

RETRY_AFTER_MAX_MS = 5_000
STALLED_COUNT = 8  # sends waiting past the bound before new ones are refused
QUEUE_FLOOR = 64  # sends this node may always have waiting, whatever the measured rate
RATE_WINDOW_S = 2.0  # the workers' rate for this node's sends is measured over this much time
RATE_MIN_SPAN_S = 0.5  # ... once they have been busy with them at least this long


class ChatBacklog:
    def __init__(
        self,
        max_age_s: float,
        *,
        stalled_count: int = STALLED_COUNT,
        forget_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age_s = max_age_s
        self.stalled_count = stalled_count
        self.forget_after_s = forget_after_s
        self._clock = clock
        self._waiting: dict[str, float] = {}  # message id -> when it was handed to a flush; oldest first
        self._answers: deque[tuple[float, int]] = deque()  # (when, how many of our sends) per notice
        self._busy_since: float | None = None  # since when some of this node's sends have waited
        self._rate = 0.0  # the workers' rate for this node's sends, measured while they were busy
        self.refused = 0
        self.forgotten = 0

    def published(self, message_id: str) -> None:
        """A send handed to a flush (kept in its first place if it is a resend of one still waiting)."""
        now = self._clock()
        self._waiting.setdefault(message_id, now)
        if self._busy_since is None:
            self._busy_since = now

    def withdrawn(self, message_id: str) -> None:
        """A send that certainly was not published: nothing will answer it."""
        self._waiting.pop(message_id, None)
        if not self._waiting:
            self._busy_since = None

    def applied(self, message_ids: Iterable[str]) -> None:
        ours = sum(1 for message_id in message_ids if self._waiting.pop(message_id, None) is not None)
        if not ours:
            return
        now = self._clock()
        self._answers.append((now, ours))
        while now - self._answers[0][0] > RATE_WINDOW_S:
            self._answers.popleft()
        if self._busy_since is not None and now - self._busy_since >= RATE_MIN_SPAN_S:
            # Only while sends waited throughout: a rate measured across an idle spell would be the
            # senders' pace, not the workers', and refuse a burst after a pause for no reason.
            since = max(self._busy_since, now - RATE_WINDOW_S)
            self._rate = sum(n for t, n in self._answers if t >= since) / (now - since)
        if not self._waiting:
            self._busy_since = None

    def interrupted(self) -> None:
        """The notices published while this node was not subscribed are lost: forget what waited."""
        self.forgotten += len(self._waiting)
        self._waiting.clear()
        self._busy_since = None

    def behind_s(self) -> float:
        """How long the ``stalled_count``-th oldest send still waiting has waited (0: fewer wait)."""
        now = self._clock()
        while self._waiting:  # the oldest first: forget those nobody will answer
            message_id, since = next(iter(self._waiting.items()))
            if now - since <= self.forget_after_s:
                break
            del self._waiting[message_id]
            self.forgotten += 1
        if len(self._waiting) < self.stalled_count:
            return 0.0
        for n, since in enumerate(self._waiting.values(), 1):
            if n == self.stalled_count:
                return now - since
        return 0.0

    def applied_per_s(self) -> float:
        """How many of this node's sends the workers answered per second, measured the last time they
        were busy with them for at least ``RATE_MIN_SPAN_S`` (over at most ``RATE_WINDOW_S``); 0
        until then. Kept through idle spells: it is what a burst after a pause will meet."""
        return self._rate

    def expected_wait_s(self) -> float:
        """How long a send made now would wait for the workers, by Little's law: the sends ahead of
        it over the rate at which the workers answer this node's sends (0 while few wait, or before
        any rate is known; a stall shows in ``behind_s`` instead)."""
        if len(self._waiting) <= QUEUE_FLOOR:
            return 0.0
        rate = self.applied_per_s()
        return len(self._waiting) / rate if rate > 0 else 0.0

    def delay_s(self) -> float:
        """The larger of how long sends have waited and how long a new one would wait."""
        return max(self.behind_s(), self.expected_wait_s())

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def check(self) -> None:
        """Raise ``overloaded`` when the workers are further behind than the bound: the waiting
        sends are older than it, or so many wait that a new one would wait longer. Without the
        second, a node keeps accepting for a whole bound at its own pace, and the sends it
        accepted meanwhile are delivered many bounds late."""
        delay = self.delay_s()
        if delay > self.max_age_s:
            self.refused += 1
            # When the excess over the bound has drained, but not sooner than the bound itself.
            retry_ms = min(RETRY_AFTER_MAX_MS, round(max(delay - self.max_age_s, self.max_age_s) * 1000))
            raise _refusal(delay, retry_ms)


def _refusal(delay_s: float, retry_ms: int) -> Rejected:
    return overloaded(f"the chat workers are {delay_s:.1f} s behind", retry_ms)
