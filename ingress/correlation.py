"""The log context at the edge: what a handler binds (``command_id``, ``provider``, ``user_id``) is
on every line it logs, and on none of the next request's or socket event's.

aiohttp serves the requests of a keep-alive connection one after another in one task, so a
value bound by one handler would otherwise still be bound for the next. Socket.IO events are
scoped by ``ChatSockets._guarded`` with :func:`infra.logging.log_scope` in the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from infra.logging import log_scope
from schemas.base import Command

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def log_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    with log_scope():
        return await handler(request)


def bind_command(command: Command) -> None:
    """Put the command's id and type on every further line of the current handler (or task)."""
    structlog.contextvars.bind_contextvars(
        command_id=command.command_id, command_type=getattr(command, "type", type(command).__name__)
    )
