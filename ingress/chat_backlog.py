"""How far behind the chat workers are, as one node sees it, and the refusal it gives past a bound.

Every chat send this node publishes is remembered until the workers say it was applied: each
applied chat message and batch publishes a ``commandsApplied`` notice with its messages' ids (to a
Socket.IO room no socket joins; every node reads it, and the node that published the sends
recognizes them). Once ``stalled_count`` sends have waited longer than ``max_age_s``
(``CHAT_BACKLOG_MAX_MS``) for it, new sends are refused before anything is published, with
``overloaded`` and a ``retryAfterMs`` of that wait: delivery stays within about the bound under
overload instead of growing with the queue, and "nothing was charged" is true. A few sends that
wait long on their own (a command being retried, one that failed closed) do not stop the others.

The bound applies only once this node has seen a notice (workers that predate them send none). A
send nobody answers is forgotten after ``forget_after_s``, and after the node's Redis subscription
was interrupted, every send waiting then is forgotten: its notice may have been lost meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ingress.rejections import Rejected, overloaded

RETRY_AFTER_MAX_MS = 5_000
STALLED_COUNT = 8  # sends waiting past the bound before new ones are refused


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
        self._workers_answer = False  # a commandsApplied notice was seen: the workers send them
        self.refused = 0
        self.forgotten = 0

    def published(self, message_id: str) -> None:
        """A send handed to a flush (kept in its first place if it is a resend of one still waiting)."""
        self._waiting.setdefault(message_id, self._clock())

    def withdrawn(self, message_id: str) -> None:
        """A send that certainly was not published: nothing will answer it."""
        self._waiting.pop(message_id, None)

    def applied(self, message_ids: Iterable[str]) -> None:
        self._workers_answer = True
        for message_id in message_ids:
            self._waiting.pop(message_id, None)

    def interrupted(self) -> None:
        """The notices published while this node was not subscribed are lost: forget what waited."""
        self.forgotten += len(self._waiting)
        self._waiting.clear()

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

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def check(self) -> None:
        """Raise ``overloaded`` when the workers are further behind than the bound."""
        if not self._workers_answer:
            return
        behind = self.behind_s()
        if behind > self.max_age_s:
            self.refused += 1
            retry_ms = min(RETRY_AFTER_MAX_MS, max(100, round(behind * 1000)))
            raise _refusal(behind, retry_ms)


def _refusal(age_s: float, retry_ms: int) -> Rejected:
    return overloaded(f"the chat workers are {age_s:.1f} s behind", retry_ms)
