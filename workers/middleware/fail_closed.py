"""Fail closed: a command whose retries are exhausted is logged as failed and its sender told.

Nothing was charged, because the transaction that would have charged rolled
back. The command is recorded as ``failed`` in the inbox (the event log), so a
replay can apply it later, and the message itself goes to the dead-letter queue.
"""

from __future__ import annotations

from typing import Any, ClassVar

import structlog
from dramatiq import Middleware

from infra import inbox
from schemas.actors import ACTORS
from workers.emits import publish
from workers.middleware import running_loop_thread
from workers.resources import ResourceHolder

log = structlog.get_logger(__name__)


class FailClosed(Middleware):
    """Reads two actor options: ``failure_notice`` (the registry's notice builder and message, for
    the sender) and ``on_give_up`` (the handler's own clean-up, e.g. marking an outbound message
    failed). Both run only if the command was not applied meanwhile by another delivery."""

    actor_options: ClassVar[set[str]] = {"failure_notice", "on_give_up"}
    # ``batch_of`` (declared by EventLog) is read too: a given-up batch fails each of its commands
    # closed, as commands of that actor.

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
        options = broker.get_actor(message.actor_name).options
        batch_of = options.get("batch_of")
        if batch_of is not None:
            inner = commands if isinstance(commands := command.get("commands"), list) else []
            reports = [(batch_of, broker.get_actor(batch_of).options, c) for c in inner if isinstance(c, dict)]
        else:
            reports = [(message.actor_name, options, command)]
        try:
            for actor, actor_options, one in reports:
                if isinstance(one.get("command_id"), str):
                    running_loop_thread().run_coroutine(self._report(actor, actor_options, one, exception))
        except Exception:
            log.exception("command.failure_report_failed", actor=message.actor_name)

    async def _report(self, actor: str, options: dict[str, Any], command: dict[str, Any], exc: BaseException) -> None:
        res = await self._resources.get()
        user_id = command.get("user_id") if isinstance(command.get("user_id"), str) else None
        recorded = await inbox.record_failure(
            res.pool, command["command_id"], str(command.get("type", "unknown")), user_id, repr(exc)
        )
        if not recorded:  # applied meanwhile by another delivery
            return
        notice, give_up = options.get("failure_notice"), options.get("on_give_up")
        if notice is None and give_up is None:
            return
        cmd = ACTORS[actor].model.model_validate(command)
        if give_up is not None:
            await give_up(res, cmd, exc)
        if notice is not None:
            build, text = notice
            await publish(res.emitter, [build(cmd, text)])
