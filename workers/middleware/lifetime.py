"""Close per-process connections when a worker process shuts down."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from dramatiq import Middleware
from dramatiq.asyncio import get_event_loop_thread

log = structlog.get_logger(__name__)


Closer = Callable[[], Awaitable[None]]
CLOSE_TIMEOUT_S = 10.0  # per closer: a connection still held by a stuck actor must not hold the exit


class CloseOnShutdown(Middleware):
    """Runs the registered ``close()`` coroutines on dramatiq's event loop at worker shutdown.

    Add it after the AsyncIO middleware: dramatiq runs after-hooks in reverse order,
    so this one runs while the event loop is still alive. On SIGTERM dramatiq calls it after
    the worker threads have finished their current message (or ``--worker-shutdown-timeout``
    passed) and the consumers' channels closed, so what is closed here is no longer in use;
    past that timeout the unfinished messages are already back in RabbitMQ and their retry is
    made safe by the inbox. Closers run in reverse order of registration (the last opened
    closes first), each for at most ``CLOSE_TIMEOUT_S``.
    """

    def __init__(self, *closers: Closer) -> None:
        self._closers = list(closers)

    def register(self, close: Closer) -> None:
        self._closers.append(close)

    def after_worker_shutdown(self, broker, worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            return
        for close in reversed(self._closers):
            try:
                loop_thread.run_coroutine(asyncio.wait_for(close(), CLOSE_TIMEOUT_S))
            except Exception:
                log.exception("worker.close_failed")
