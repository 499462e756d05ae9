"""``python -m workers --queues chat --processes 2 --threads 8`` runs a worker pool.

Pending migrations are applied once, then dramatiq's own CLI forks and supervises the workers.
"""

from __future__ import annotations

import asyncio
import os
import sys

from dramatiq.cli import main as dramatiq_main
from dramatiq.cli import make_argument_parser

from infra import db
from infra.logging import configure_logging
from infra.recursion_limit import pin_recursion_limit
from infra.settings import Settings
from schemas.queues import WORK_QUEUES, queues_of
from workers.middleware.metrics import prepare_pool_dir, remove_pool_dir
from workers.pool_slot import POOL_SIZE_ENV


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, service="workers")
    args = make_argument_parser().parse_args(["workers.broker", "--skip-logging", *argv])
    unknown = set(args.queues or ()) - set(WORK_QUEUES)
    if unknown:
        print(f"unknown queue(s): {', '.join(sorted(unknown))}; known: {', '.join(WORK_QUEUES)}", file=sys.stderr)
        return 2
    if args.queues:  # a capability's pool consumes all its queues: ``chat`` is chat and its partitions
        args.queues = list(dict.fromkeys(q for queue in args.queues for q in queues_of(queue)))
    asyncio.run(db.migrate(settings.database_url))
    metrics_dir = prepare_pool_dir(settings)  # before the fork: every process of this pool shares it
    pin_recursion_limit()  # before the fork too: the workers inherit the pin and its cap
    os.environ[POOL_SIZE_ENV] = str(args.processes)  # each process then knows which partitions it leads
    try:
        return dramatiq_main(args) or 0
    finally:
        remove_pool_dir(metrics_dir)


if __name__ == "__main__":
    sys.exit(main())
