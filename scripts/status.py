"""``python -m scripts.status``: every queue at a glance.

Examples::

    python -m scripts.status              # one table: ready, unacked, delayed, dead, consumers, rates, oldest age
    python -m scripts.status --watch      # refresh every 2 s until Ctrl-C (--watch 10: every 10 s)
    python -m scripts.status --json       # one JSON document (with --watch: one per line, per refresh)

Figures come from RabbitMQ's management API (RABBITMQ_MANAGEMENT_URL, default: AMQP_URL's host on
port 15672), or, when it is unreachable, from ``rabbitmqctl`` on the broker host (no rates then).
Exit codes: 0 done, 1 neither source answered, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from infra.queue_stats import QueueStats, QueueStatsUnavailable, collect
from infra.settings import Settings
from scripts.cli import load_settings

AGE_WARN_S = 60.0
HEALTHY_STATES = ("running", "idle", "flow")  # flow: RabbitMQ is throttling its publishers, briefly


def _interval(value: str) -> float:
    seconds = float(value)
    if not 0.5 <= seconds <= 3600:
        raise argparse.ArgumentTypeError("must be between 0.5 and 3600 seconds")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.status", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=_interval,
        metavar="S",
        help="refresh every S seconds (default 2) until Ctrl-C",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    for unit, size, sub, sub_size in (("d", 86_400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size}{unit}{(s % size) // sub_size:02d}{sub}"
    return f"{s}s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(stats: QueueStats) -> Group:
    """The table and a line saying where the figures came from."""
    table = Table(title=f"Gatekeeper queues · vhost {stats.vhost}", title_justify="left")
    for name in ("queue", "state"):
        table.add_column(name)
    for name in ("ready", "unacked", "delayed", "dead", "consumers", "in/s", "out/s", "oldest"):
        table.add_column(name, justify="right")
    for row in stats.rows:
        state_style = "green" if row.state in HEALTHY_STATES else "red"
        age_style = "yellow" if row.oldest_age_s is not None and row.oldest_age_s >= AGE_WARN_S else ""
        table.add_row(
            row.queue,
            Text(row.state, style=state_style),
            str(row.ready),
            str(row.unacked),
            str(row.delayed),
            Text(str(row.dead), style="bold red" if row.dead else ""),
            Text(str(row.consumers), style="" if row.consumers else "yellow"),
            _rate(row.in_rate),
            _rate(row.out_rate),
            Text(format_age(row.oldest_age_s), style=age_style),
        )
    at = stats.collected_at.strftime("%Y-%m-%d %H:%M:%SZ")
    if stats.source == "management":
        source = f"source: management API {stats.endpoint}; rates: average of the last {stats.rate_window_s} s"
    else:
        source = f"source: rabbitmqctl, no rates (management API unavailable: {stats.fallback_reason})"
    return Group(table, Text(f"{source}; collected {at}", style="dim"))


async def _collect(settings: Settings) -> QueueStats | str:
    try:
        return await collect(settings)
    except QueueStatsUnavailable as exc:
        return f"queue figures unavailable: {exc}"


def _once(settings: Settings, as_json: bool, console: Console) -> int:
    stats = asyncio.run(_collect(settings))
    if isinstance(stats, str):
        print(stats, file=sys.stderr)
        return 1
    if as_json:
        print(stats.model_dump_json(indent=2))
    else:
        console.print(render(stats))
    return 0


def _watch(settings: Settings, as_json: bool, interval: float, console: Console) -> int:
    """Refresh until Ctrl-C; a source failing meanwhile is shown, and the next refresh tries again."""
    with contextlib.suppress(KeyboardInterrupt):
        if as_json:  # one document per line
            while True:
                stats = asyncio.run(_collect(settings))
                if isinstance(stats, str):
                    print(stats, file=sys.stderr, flush=True)
                else:
                    print(stats.model_dump_json(), flush=True)
                time.sleep(interval)
        if not console.is_terminal:  # a pipe or a log file: one table after another
            while True:
                stats = asyncio.run(_collect(settings))
                console.print(Text(stats, style="bold red") if isinstance(stats, str) else render(stats), "")
                sys.stdout.flush()
                time.sleep(interval)
        with Live(console=console, auto_refresh=False) as live:  # a terminal: the table redrawn in place
            while True:
                stats = asyncio.run(_collect(settings))
                live.update(Text(stats, style="bold red") if isinstance(stats, str) else render(stats), refresh=True)
                time.sleep(interval)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings()
    # A pipe gets the whole table rather than one wrapped to 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 160)
    if args.watch is not None:
        return _watch(settings, args.json, args.watch, console)
    return _once(settings, args.json, console)


if __name__ == "__main__":
    sys.exit(main())
