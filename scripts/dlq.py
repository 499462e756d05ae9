"""``python -m scripts.dlq list|requeue|purge``: look at, retry and drop dead-lettered commands.

Examples::

    python -m scripts.dlq list                                  # every dead message, all queues
    python -m scripts.dlq list --queue chat --since 2h --json   # chat and its partitions (chat.p0...)
    python -m scripts.dlq requeue --actor chat_send_message --dry-run
    python -m scripts.dlq requeue --queue billing --limit 10
    python -m scripts.dlq purge --queue ai --since 2026-11-23T10:00 --yes

Listing never loses or reorders a message: messages are fetched unacked and
returned to their places (see infra/dead_letters.py). ``requeue`` resets the
retry count; a message requeued twice is harmless because workers apply each
command once per command_id.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

import aio_pika
import asyncpg

from infra import dead_letters
from infra.dead_letters import DeadMessage, Filters
from infra.settings import Settings
from schemas.queues import ALL_QUEUES, WORK_QUEUES
from scripts.cli import confirm, load_settings


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _since(value: str):
    try:
        return dead_letters.parse_since(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected an ISO time (2026-11-23T10:00) or an age (90s, 15m, 2h, 7d)"
        ) from None


def _queue(value: str) -> str:
    name = value.removesuffix(".XQ").removesuffix(".DQ")
    if name not in WORK_QUEUES:
        raise argparse.ArgumentTypeError(
            f"unknown queue {value!r}; one of {', '.join(ALL_QUEUES)} or a chat partition (chat.p0...)"
        )
    return name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.dlq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    helps = {
        "list": "show dead messages with their error and traceback tail",
        "requeue": "move dead messages back to their work queue with fresh retries",
        "purge": "delete dead messages (asks for confirmation)",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text)
        queue_help = f"one of {', '.join(ALL_QUEUES)} (chat: with its partitions), or a partition like chat.p2"
        p.add_argument("--queue", type=_queue, help=f"{queue_help} (default: all)")
        p.add_argument("--actor", help="only messages for this actor, e.g. chat_send_message")
        p.add_argument("--since", type=_since, help="failed at or after: ISO time or an age like 2h")
        p.add_argument("--limit", type=_positive, help="at most this many messages")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if name == "requeue":
            p.add_argument("--dry-run", action="store_true", help="show what would be requeued; change nothing")
        if name == "purge":
            p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


async def _add_inbox_errors(database_url: str, found: list[DeadMessage]) -> None:
    """The error the worker recorded in the inbox (event log) is the clearest one; best effort."""
    ids = [d.command_id for d in found if d.command_id]
    if not ids:
        return
    try:
        conn = await asyncpg.connect(database_url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"note: inbox not reachable ({exc.__class__.__name__}); errors come from tracebacks", file=sys.stderr)
        return
    try:
        await dead_letters.add_inbox_errors(conn, found)
    except asyncpg.PostgresError:
        return
    finally:
        await conn.close()


def _time(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _table(found: list[DeadMessage]) -> str:
    header = ("QUEUE", "ACTOR", "MESSAGE ID", "COMMAND ID", "TYPE", "ENQUEUED", "FAILED", "RETRIES")
    rows = [
        (
            d.queue,
            d.actor or "-",
            d.message_id or "-",
            d.command_id or "-",
            d.command_type or "-",
            _time(d.enqueued_at),
            _time(d.failed_at),
            str(d.retries),
        )
        for d in found
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = []
    for i, row in enumerate([header, *rows]):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            continue
        dead = found[i - 1]
        first, *more = (dead.error or "-").splitlines() or ["-"]
        lines.append(f"    error: {first}")
        lines.extend(f"           {line}" for line in more)
        lines.extend(f"    | {line}" for line in dead.traceback_tail)
    return "\n".join(lines)


def _print(found: list[DeadMessage], as_json: bool, summary: str) -> None:
    if as_json:
        print(json.dumps({"messages": [d.as_json() for d in found], "summary": summary}, indent=2))
    else:
        if found:
            print(_table(found))
        print(summary)


def _confirm(queue: str | None) -> bool:
    answers = {"yes"} | ({queue} if queue else set())
    return confirm(f"Type {'the queue name or ' if queue else ''}'yes' to delete the matching dead messages: ", answers)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    filters = Filters(
        queues=dead_letters.queues_for(args.queue, WORK_QUEUES), actor=args.actor, since=args.since, limit=args.limit
    )
    url = settings.amqp_url
    if args.command == "list":
        found = await dead_letters.browse(url, filters)
        await _add_inbox_errors(settings.database_url, found)
        _print(found, args.json, f"{len(found)} dead message(s)")
    elif args.command == "requeue":
        found = await dead_letters.requeue(url, filters, dry_run=args.dry_run)
        movable = [d for d in found if d.body is not None]
        verb = "would requeue" if args.dry_run else "requeued"
        skipped = len(found) - len(movable)
        _print(
            found, args.json, f"{verb} {len(movable)} message(s)" + (f", {skipped} undecodable left" if skipped else "")
        )
    else:
        if not args.yes:
            preview = await dead_letters.browse(url, filters)
            if not preview:
                _print([], args.json, "purged 0 message(s)")
                return 0
            print(f"{len(preview)} dead message(s) match.", file=sys.stderr)
            if not _confirm(args.queue):
                print("aborted: nothing purged", file=sys.stderr)
                return 1
            # Delete what was shown and confirmed, not what arrived since.
            ids = frozenset(d.message_id for d in preview if d.message_id)
            filters = dataclasses.replace(filters, message_ids=ids, limit=None)
        found = await dead_letters.purge(url, filters)
        _print(found, args.json, f"purged {len(found)} message(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings()
    try:
        return asyncio.run(run(args, settings))
    except (OSError, ConnectionError, aio_pika.exceptions.AMQPError) as exc:
        # Nothing is lost: messages fetched but not yet acked return to their queue with the connection.
        print(f"error: RabbitMQ ({exc.__class__.__name__}): {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
