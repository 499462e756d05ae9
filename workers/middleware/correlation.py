"""One correlation id per message: every log line of a command's processing carries its ``command_id``.

:class:`LogContext` binds the message's fields (``command_id``, ``command_type``, ``actor``,
``message_id``, ``queue``) in the worker thread for the whole of its processing, from the first
``before_process_message`` hook to the last ``after_process_message`` hook, so the lines of the
other middleware (retries, fail-closed) and of dramatiq itself carry them.

The actor's coroutine carries them too: dramatiq runs it on its event-loop thread through
``asyncio.run_coroutine_threadsafe``, whose ``call_soon_threadsafe`` copies the *calling* thread's
context into the callback that creates the task, and the task copies that again. So the coroutine
starts with a copy of the worker thread's context at that moment (tests/unit/test_correlation.py
pins this down), and what it binds itself (a follow-up's ``caused_by``) stays in its copy.

A copy also lives on in every task the coroutine starts, however long it lives: connections
opened lazily by the first command must be opened :func:`detached` from it, or their background
tasks (aio-pika's reader, its reconnects) would log that command's id for the life of the process.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from dramatiq import Middleware

T = TypeVar("T")


def message_fields(message: Any) -> dict[str, str]:
    """The log fields of a dramatiq message; a command's id and type when its body has them."""
    fields = {"actor": message.actor_name, "message_id": message.message_id, "queue": message.queue_name}
    command = message.kwargs.get("command") if isinstance(message.kwargs, dict) else None
    if isinstance(command, dict):
        for key, name in (("command_id", "command_id"), ("type", "command_type")):
            if isinstance(command.get(key), str):
                fields[name] = command[key]
    return fields


class LogContext(Middleware):
    """Binds a message's log fields for its whole processing in the worker thread.

    Must be the broker's first middleware: its before-hook then runs before every other one and
    its after-hooks (which dramatiq runs in reverse order) after every other one. The context is
    cleared on both sides, so nothing of one message can reach the next one on the same thread.
    """

    def before_process_message(self, broker: Any, message: Any) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**message_fields(message))

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None, exception: Any = None) -> None:
        structlog.contextvars.clear_contextvars()

    def after_skip_message(self, broker: Any, message: Any) -> None:
        structlog.contextvars.clear_contextvars()


async def detached(factory: Callable[[], Awaitable[T]]) -> T:
    """Await ``factory()`` in a task whose log context is empty (other context variables are kept).

    For what outlives the command that happens to trigger it: lazily opened connections and the
    background tasks they start.
    """
    context = contextvars.copy_context()
    context.run(structlog.contextvars.clear_contextvars)
    return await asyncio.create_task(_awaited(factory), context=context)


async def _awaited(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()
