"""Close per-process connections when a worker process shuts down."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from dramatiq import Middleware
from dramatiq.asyncio import get_event_loop_thread

log = structlog.get_logger(__name__)


Closer = Callable[[], Awaitable[None]]


class CloseOnShutdown(Middleware):
    """Runs the registered ``close()`` coroutines on dramatiq's event loop at worker shutdown.

    Add it after the AsyncIO middleware: dramatiq runs after-hooks in reverse order,
    so this one runs while the event loop is still alive and all work has finished.
    Closers run in reverse order of registration (the last opened closes first).
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
                loop_thread.run_coroutine(close())
            except Exception:
                log.exception("worker.close_failed")
