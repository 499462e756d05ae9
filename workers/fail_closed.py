"""Fail closed: a command whose retries are exhausted is logged as failed and its sender told.

Nothing was charged, because the transaction that would have charged rolled
back. The command is recorded as ``failed`` in the inbox (the event log), so a
replay can apply it later, and the message itself goes to the dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from dramatiq import Middleware
from dramatiq.asyncio import get_event_loop_thread

from infra import inbox
from workers.resources import ResourceHolder, Resources

log = structlog.get_logger(__name__)

FailureHandler = Callable[[Resources, dict[str, Any], BaseException], Awaitable[None]]
_handlers: dict[str, FailureHandler] = {}


def on_failure(actor_name: str) -> Callable[[FailureHandler], FailureHandler]:
    """Register what to do when ``actor_name`` gives up on a command."""

    def register(handler: FailureHandler) -> FailureHandler:
        _handlers[actor_name] = handler
        return handler

    return register


class FailClosed(Middleware):
    def __init__(self, resources: ResourceHolder) -> None:
        self._resources = resources

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        if exception is None or not message.failed:
            return
        command = message.kwargs.get("command") if isinstance(message.kwargs, dict) else None
        log.error(
            "command.failed",
            actor=message.actor_name,
            message_id=message.message_id,
            command_id=command.get("command_id") if isinstance(command, dict) else None,
            error=repr(exception),
        )
        if not isinstance(command, dict) or not isinstance(command.get("command_id"), str):
            return
        try:
            get_event_loop_thread().run_coroutine(self._report(_handlers.get(message.actor_name), command, exception))
        except Exception:
            log.exception("command.failure_report_failed", actor=message.actor_name)

    async def _report(self, handler: FailureHandler | None, command: dict[str, Any], exc: BaseException) -> None:
        res = await self._resources.get()
        user_id = command.get("user_id") if isinstance(command.get("user_id"), str) else None
        recorded = await inbox.record_failure(
            res.pool, command["command_id"], str(command.get("type", "unknown")), user_id, repr(exc)
        )
        if recorded and handler is not None:  # not applied meanwhile by another delivery
            await handler(res, command, exc)
