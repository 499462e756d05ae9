"""Time series for the admin console's charts, aggregated in PostgreSQL.

Each series is a run of equal buckets ending at the last whole ``step`` before ``until``
(buckets are aligned to the Unix epoch, so a refresh a few seconds later shows the same
buckets); the bucket still in progress is left out, so its low count never reads as a drop.
Empty buckets are 0. Sources:

- ``messages``: rows of ``messages`` (every message stored in a room: chat, channel in/out, AI
  replies), per second: the bucket's count divided by ``step``.
- ``credits``: credits charged, the sum of ``ledger_transactions`` of the usage kinds
  (:data:`CHARGE_KINDS`), each counted once through its positive posting.
- ``ai_tokens``: prompt + completion tokens of every model call in ``ai_usage``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

Metric = Literal["messages", "credits", "ai_tokens"]
METRICS: Final[tuple[Metric, ...]] = ("messages", "credits", "ai_tokens")
# What a user pays for usage: words (chat, channels, AI replies), call minutes and their fee.
CHARGE_KINDS: Final = ("charge", "call", "call_fee")
UNITS: Final[dict[Metric, str]] = {"messages": "messages/s", "credits": "credits", "ai_tokens": "tokens"}
SOURCES: Final[dict[Metric, str]] = {
    "messages": "messages (count per bucket / step)",
    "credits": f"ledger_transactions of kinds {', '.join(CHARGE_KINDS)} (sum of amounts)",
    "ai_tokens": "ai_usage (sum of prompt_tokens + completion_tokens)",
}

_EPOCH = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"
# $1 window start, $2 window end (exclusive), $3 step; each source yields (bucket, value).
_SOURCES_SQL: Final[dict[Metric, str]] = {
    "messages": f"""
        SELECT date_bin($3::interval, created_at, {_EPOCH}) AS t, count(*)::float8 AS v
        FROM messages WHERE created_at >= $1 AND created_at < $2 GROUP BY 1""",
    "credits": f"""
        SELECT date_bin($3::interval, t.created_at, {_EPOCH}) AS t, sum(p.amount)::float8 AS v
        FROM ledger_transactions t JOIN ledger_postings p ON p.txn_id = t.txn_id AND p.amount > 0
        WHERE t.kind = ANY($4::text[]) AND t.created_at >= $1 AND t.created_at < $2 GROUP BY 1""",
    "ai_tokens": f"""
        SELECT date_bin($3::interval, created_at, {_EPOCH}) AS t,
               sum(prompt_tokens + completion_tokens)::float8 AS v
        FROM ai_usage WHERE created_at >= $1 AND created_at < $2 GROUP BY 1""",
}


class Reader(Protocol):
    async def fetch(self, query: str, *args: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Series:
    metric: Metric
    start: dt.datetime  # first bucket's start
    end: dt.datetime  # last bucket's end (exclusive)
    step_s: int
    sums: list[tuple[dt.datetime, float]]  # (bucket start, count or sum), oldest first, every bucket present

    @property
    def points(self) -> list[tuple[dt.datetime, float]]:
        """What the chart draws: messages per second for ``messages``, the sums otherwise."""
        if self.metric == "messages":
            return [(t, v / self.step_s) for t, v in self.sums]
        return self.sums

    @property
    def total(self) -> float:
        """The window's count (messages) or sum (credits, tokens)."""
        return sum(v for _, v in self.sums)


def window(until: dt.datetime, minutes: int, step_s: int) -> tuple[dt.datetime, dt.datetime]:
    """The whole buckets of ``minutes`` ending at the last multiple of ``step_s`` at or before ``until``."""
    end_s = int(until.timestamp()) // step_s * step_s
    end = dt.datetime.fromtimestamp(end_s, dt.UTC)
    return end - dt.timedelta(minutes=minutes), end


async def series(db: Reader, metric: Metric, until: dt.datetime, minutes: int, step_s: int) -> Series:
    """One metric's buckets; ``minutes * 60`` must be a multiple of ``step_s`` (the caller validates)."""
    start, end = window(until, minutes, step_s)
    step = dt.timedelta(seconds=step_s)
    args: list[Any] = [start, end, step]
    if metric == "credits":
        args.append(list(CHARGE_KINDS))
    rows = await db.fetch(
        f"WITH b AS ({_SOURCES_SQL[metric]})"
        " SELECT g.t, coalesce(b.v, 0) AS v FROM generate_series($1::timestamptz, $2::timestamptz - $3::interval,"
        " $3::interval) AS g(t) LEFT JOIN b ON b.t = g.t ORDER BY g.t",
        *args,
    )
    return Series(metric, start, end, step_s, [(r["t"], float(r["v"])) for r in rows])
