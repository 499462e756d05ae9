"""``python -m scripts.replay``: re-enqueue commands from the event log (or a JSONL export) and
report what each did.

    python -m scripts.replay --since 2026-11-23T10:00 --until 2026-11-23T11:00 --status failed --dry-run
    python -m scripts.replay --since 2026-11-23T10:00 --type chat.send_message,ai.reply --rate 50
    python -m scripts.replay --from-file events.jsonl

Each command is published again (a new message, the same ``command_id``) with publisher confirms;
the workers' inbox makes a replay of anything already applied a no-op. Then it waits until every
replayed command's event-log row shows a new delivery, and sums up: **re-applied** (the latest
delivery applied or rejected it), **no-op** (a duplicate), **failed**, **pending** (no outcome
within ``--wait``). The exit code is 1 if anything failed, is pending, was not published, or a
file line was bad. The runbook is in docs/operations.md ("Replay").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from infra import db, event_log
from infra.logging import configure_logging
from infra.publisher import CommandPublisher, PublishFailed
from infra.settings import Settings
from schemas.queues import ALL_QUEUES, WORK_QUEUES, capability_of, queues_of
from scripts.replay_file import Job, read_lines

BATCH = 500
POLL_S = 0.5


def _timestamp(text: str) -> datetime:
    """ISO-8601; a time without an offset is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _rate(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("--rate must be positive")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.replay", description=__doc__.split("\n\n")[0])
    p.add_argument("--since", type=_timestamp, help="first_seen_at >= this (ISO-8601, UTC if no offset)")
    p.add_argument("--until", type=_timestamp, help="first_seen_at < this (default: now)")
    p.add_argument("--type", action="append", default=[], help="command type; repeat or comma-separate")
    p.add_argument("--user", help="only commands about this user")
    p.add_argument("--tenant", help="only commands about this tenant")
    p.add_argument("--status", action="append", default=[], choices=event_log.STATUSES, help="repeatable")
    p.add_argument("--queue", choices=WORK_QUEUES, help="logged from this queue; chat includes its partitions")
    p.add_argument("--from-file", metavar="EVENTS.JSONL", help="also replay the commands of this JSON Lines file")
    p.add_argument("--dry-run", action="store_true", help="count what would be replayed; publish nothing")
    p.add_argument("--rate", type=_rate, help="at most this many messages per second (default: unlimited)")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for outcomes (default 60)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    args.type = [t for item in args.type for t in item.split(",") if t]
    if args.since is None and args.from_file is None:
        p.error("give --since (and usually --until) to replay from the event log, or --from-file")
    if args.since is not None and args.until is not None and args.until <= args.since:
        p.error("--until must be after --since")
    return args


def filters_of(args: argparse.Namespace) -> event_log.Filters | None:
    if args.since is None:
        return None
    return event_log.Filters(
        args.since,
        args.until or datetime.now(UTC),
        tuple(args.type),
        args.user,
        args.tenant,
        tuple(args.status),
        queues_of(args.queue) if args.queue else (),
    )


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.1f} msg/s", style="progress.data.speed")


class TokenBucket:
    """At most ``rate`` takes per second on average, bursts of at most ``burst``; None is unlimited."""

    def __init__(self, rate: float | None, burst: float = 1.0) -> None:
        self._rate, self._burst = rate, max(burst, 1.0)
        self._tokens, self._at = self._burst, time.monotonic()

    async def take(self) -> None:
        if self._rate is None:
            return
        while True:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / self._rate)


@dataclass
class Report:
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    published: int = 0
    unpublished: list[str] = field(default_factory=list)
    verdicts: dict[str, event_log.Verdict] = field(default_factory=dict)

    def count(self, verdict: str) -> int:
        return sum(1 for v in self.verdicts.values() if v == verdict)

    def ids(self, verdict: str) -> list[str]:
        return [c for c, v in self.verdicts.items() if v == verdict]

    @property
    def ok(self) -> bool:
        return not (self.bad_lines or self.unpublished or self.count("failed") or self.count("pending"))

    def as_dict(self) -> dict:
        return {
            "published": self.published,
            "re-applied": self.count("re-applied"),
            "no-op": self.count("no-op"),
            "failed": self.count("failed"),
            "pending": self.count("pending"),
            "failed_ids": self.ids("failed"),
            "pending_ids": self.ids("pending"),
            "unpublished_ids": self.unpublished,
            "bad_lines": [{"line": n, "reason": r} for n, r in self.bad_lines],
        }


async def _batches(
    pool: asyncpg.Pool, file_jobs: list[Job], filters: event_log.Filters | None
) -> AsyncIterator[list[Job]]:
    """The file's commands, then the log's, in batches; each command id once."""
    seen: set[str] = set()

    def fresh(jobs: Iterable[Job]) -> list[Job]:
        out = [j for j in jobs if j.command_id not in seen]
        seen.update(j.command_id for j in out)
        return out

    for i in range(0, len(file_jobs), BATCH):
        yield fresh(file_jobs[i : i + BATCH])
    if filters is None:
        return
    batch: list[Job] = []
    async for row in event_log.select(pool, filters, BATCH):
        # A command logged from a chat partition is replayed to plain chat: the worker finds its actor by
        # name, and a partition may not be declared (nor consumed) any more.
        batch.append(Job(capability_of(row.queue_name), row.actor_name, row.payload))
        if len(batch) == BATCH:
            yield fresh(batch)
            batch = []
    if batch:
        yield fresh(batch)


async def dry_run(pool: asyncpg.Pool, file_jobs: list[Job], filters: event_log.Filters | None, out: Console) -> int:
    rows: Counter[tuple[str, str]] = Counter()
    if filters is not None:
        for kind, status, n in await event_log.counts(pool, filters):
            rows[(kind, status)] += n
    marks = await event_log.marks(pool, (j.command_id for j in file_jobs))
    for job in {j.command_id: j for j in file_jobs}.values():
        mark = marks.get(job.command_id)
        rows[(job.command_type, mark.status if mark else "not logged")] += 1
    out.print("dry run: nothing published. Would replay:")
    for (kind, status), n in sorted(rows.items()):
        out.print(f"  {kind:<32} {status:<11} {n:>8}")
    out.print(f"  {'total':<44} {sum(rows.values()):>8}")
    return 0


async def replay(
    pool: asyncpg.Pool,
    publisher: CommandPublisher,
    file_jobs: list[Job],
    filters: event_log.Filters | None,
    rate: float | None,
    wait_s: float,
    progress: Progress,
    report: Report,
) -> None:
    total = len({j.command_id for j in file_jobs})
    if filters is not None:
        total += sum(n for _, _, n in await event_log.counts(pool, filters))
    sending = progress.add_task("replaying", total=total)
    before: dict[str, event_log.Mark | None] = {}
    bucket = TokenBucket(rate)
    async for batch in _batches(pool, file_jobs, filters):
        marks = await event_log.marks(pool, (j.command_id for j in batch))
        for job in batch:
            await bucket.take()
            try:
                await publisher.publish_payload(job.queue, job.actor, job.payload)
            except PublishFailed:
                report.unpublished.append(job.command_id)
            else:
                before[job.command_id] = marks.get(job.command_id)
                report.published += 1
            progress.advance(sending)
    progress.update(sending, total=progress.tasks[sending].completed)  # rows logged meanwhile are not in it
    await wait_for_outcomes(pool, before, wait_s, progress, report)


async def wait_for_outcomes(
    pool: asyncpg.Pool, before: dict[str, event_log.Mark | None], wait_s: float, progress: Progress, report: Report
) -> None:
    waiting = progress.add_task("outcomes", total=len(before))
    pending = set(before)
    deadline = time.monotonic() + wait_s
    while pending:
        now = await event_log.marks(pool, pending)
        for command_id in list(pending):
            verdict = event_log.verdict(before[command_id], now.get(command_id))
            if verdict != "pending":
                report.verdicts[command_id] = verdict
                pending.discard(command_id)
                progress.advance(waiting)
        if not pending or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_S)
    report.verdicts.update(dict.fromkeys(pending, "pending"))


def print_report(report: Report, out: Console, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    out.print(
        f"published {report.published}" + (f", NOT published {len(report.unpublished)}" if report.unpublished else "")
    )
    for verdict in ("re-applied", "no-op", "failed", "pending"):
        out.print(f"  {verdict:<11} {report.count(verdict):>8}")
    for verdict in ("failed", "pending"):
        if ids := report.ids(verdict):
            out.print(f"{verdict}: {', '.join(ids[:20])}" + (" …" if len(ids) > 20 else ""))
    if report.unpublished:
        out.print(f"not published: {', '.join(report.unpublished[:20])}")
    if report.bad_lines:
        out.print(f"bad lines: {len(report.bad_lines)} (reported above)")


async def main_async(args: argparse.Namespace, file_jobs: list[Job], report: Report) -> int:
    settings = Settings()
    out = Console(highlight=False, soft_wrap=True, stderr=args.json)  # with --json, stdout is the JSON alone
    for number, reason in report.bad_lines:
        out.print(f"line {number}: {reason}")
    filters = filters_of(args)
    pool = await db.create_pool(settings.database_url, max_size=2)
    try:
        if args.dry_run:
            await dry_run(pool, file_jobs, filters, out)
            return 1 if report.bad_lines else 0
        publisher = CommandPublisher(
            settings.amqp_url,
            ALL_QUEUES,
            settings.publish_timeout_s,
            connection_name="gatekeeper-replay",
            queue_type=settings.amqp_queue_type,
        )
        await publisher.start()
        columns = (
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
        )
        try:
            with Progress(*columns, console=Console(stderr=True)) as progress:
                await replay(pool, publisher, file_jobs, filters, args.rate, args.wait, progress, report)
        finally:
            await publisher.close()
    finally:
        await pool.close()
    print_report(report, out, args.json)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging("WARNING", "console")
    report, file_jobs = Report(), list[Job]()
    if args.from_file:
        with open(args.from_file, encoding="utf-8") as handle:
            file_jobs, report.bad_lines = read_lines(handle)
    sys.exit(asyncio.run(main_async(args, file_jobs, report)))


if __name__ == "__main__":
    main()
