"""dramatiq middleware every worker pool runs: logs, metrics, retries, failing closed."""

from __future__ import annotations

from dramatiq.asyncio import EventLoopThread, get_event_loop_thread


def running_loop_thread() -> EventLoopThread:
    """dramatiq's event loop thread, where middleware runs its coroutines; RuntimeError when there
    is none (before the AsyncIO middleware starts it at worker boot, after it stops at shutdown)."""
    loop_thread = get_event_loop_thread()
    if loop_thread is None:
        raise RuntimeError("dramatiq's event loop thread is not running")
    return loop_thread
