"""Structured logs (structlog): JSON lines in production, readable lines on a console."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger


def configure_logging(level: str = "INFO", fmt: str = "json", **static: str) -> None:
    """Route structlog and the standard library's loggers through one renderer.

    ``static`` fields (service, node) are added to every line, from every thread.
    """

    def add_static(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        for key, value in static.items():
            event.setdefault(key, value)
        return event

    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_static,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    threshold = logging.getLevelName(level.upper())
    if not isinstance(threshold, int):
        raise ValueError(f"LOG_LEVEL: unknown level {level!r}")
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Calls below the level are no-ops of the bound logger: a debug line on a hot path costs a
        # method call, never the processors (context merge, timestamp) or the stdlib record.
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    for noisy in ("aio_pika", "aiormq", "pika", "engineio.server", "socketio.server"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


@contextlib.contextmanager
def log_scope(**fields: Any) -> Iterator[None]:
    """Bind ``fields`` to every line logged in this block, and drop on exit whatever the block bound.

    Unlike ``structlog.contextvars.bound_contextvars``, which restores only the keys it was given,
    this restores the whole log context: a ``command_id`` bound deep inside a handler cannot leak
    into the next request or socket event handled in the same task.
    """
    saved = structlog.contextvars.get_contextvars()
    structlog.contextvars.bind_contextvars(**fields)
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**saved)
