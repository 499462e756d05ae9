"""``python -m scripts.event_log prune``: retention for the event log (``event_log`` table).

    python -m scripts.event_log prune --before 30d --dry-run
    python -m scripts.event_log prune --before 2026-10-01T00:00 --status applied,duplicate --yes

Deletes the rows last seen before the cutoff, in batches (each its own short transaction), after
asking for confirmation unless ``--yes``. Only the log is pruned, never the ``inbox`` table: the
inbox is the idempotency record, so a pruned command still applies at most once; it just can no
longer be replayed from the log (``python -m scripts.replay``). A cutoff less than a day ago is
refused without ``--force``, to keep a replay window. The runbook is in docs/operations.md
("Event log retention").
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta

import asyncpg

from infra import db
from infra import event_log as log
from infra.settings import Settings
from scripts.cli import confirm, load_settings

MIN_AGE = timedelta(days=1)
_DAYS = re.compile(r"(\d+)d")


def _cutoff(text: str) -> datetime:
    """``Nd`` (N days ago) or an ISO-8601 time, UTC if it has no offset."""
    if days := _DAYS.fullmatch(text.strip()):
        return datetime.now(UTC) - timedelta(days=int(days.group(1)))
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO-8601 time or Nd (days ago), not {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _statuses(text: str) -> tuple[str, ...]:
    found = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not found or not set(found) <= set(log.STATUSES):
        raise argparse.ArgumentTypeError(f"statuses are a comma-separated subset of {','.join(log.STATUSES)}")
    return found


def _batch(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 100_000:
        raise argparse.ArgumentTypeError("--batch must be between 1 and 100000")
    return n


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.event_log", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "prune",
        help="delete event-log rows last seen before a cutoff (never the inbox)",
        description="Delete event-log rows last seen before the cutoff. The inbox (idempotency) is never"
        " touched: pruned commands still apply at most once, but can no longer be replayed from the log.",
    )
    p.add_argument("--before", type=_cutoff, required=True, help="ISO-8601 time (UTC if no offset) or Nd, e.g. 30d")
    p.add_argument("--status", type=_statuses, default=(), help="only these statuses, e.g. applied,duplicate")
    p.add_argument("--batch", type=_batch, default=5000, help="rows per delete transaction (default 5000)")
    p.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--force", action="store_true", help="allow a cutoff less than 1 day ago")
    args = parser.parse_args(argv)
    if args.before > datetime.now(UTC) - MIN_AGE and not args.force:
        parser.error("--before is less than 1 day ago: that would leave no replay window (add --force)")
    return args


def _what(args: argparse.Namespace) -> str:
    statuses = f" with status {','.join(args.status)}" if args.status else ""
    return f"event-log row(s) last seen before {args.before.isoformat()}{statuses}"


async def prune(pool: asyncpg.Pool, args: argparse.Namespace) -> int:
    if args.dry_run:
        print(f"dry run: would delete {await log.prunable(pool, args.before, args.status)} {_what(args)}")
        return 0
    if not args.yes:
        matching = await log.prunable(pool, args.before, args.status)
        if matching == 0:
            print(f"deleted 0 {_what(args)}")
            return 0
        print(f"{matching} {_what(args)} match. The inbox is kept; they can no longer be replayed.", file=sys.stderr)
        if not confirm("Type 'yes' to delete them: "):
            print("aborted: nothing deleted", file=sys.stderr)
            return 1
    deleted = batches = 0
    while True:
        n = await log.prune_batch(pool, args.before, args.status, args.batch)
        deleted += n
        batches += n > 0
        if n < args.batch:
            break
    print(f"deleted {deleted} {_what(args)} in {batches} batch(es)")
    return 0


async def main_async(args: argparse.Namespace, settings: Settings) -> int:
    pool = await db.create_pool(settings.database_url, max_size=1)
    try:
        return await prune(pool, args)
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings()
    try:
        return asyncio.run(main_async(args, settings))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"error: PostgreSQL ({exc.__class__.__name__}): {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
