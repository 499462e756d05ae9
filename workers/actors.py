"""Every dramatiq actor, built from the command registry (:data:`schemas.actors.ACTORS`) and the
handlers of the worker modules.

Each actor does the same steps around its handler: validate the command, get the process's
resources, run the handler, carry out the outcome's effects (follow-up commands, then socket
emits), log ``command.done``, and return the status the event log records. Failure handling is
declared as actor options that :class:`workers.middleware.fail_closed.FailClosed` reads.
"""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog

from schemas.actors import ACTORS, ActorSpec
from workers import ai, billing, calls, chain, channels, chat, outbound, plans, tips
from workers.effects import carry_out
from workers.handlers import Handler
from workers.resources import ResourceHolder

log = structlog.get_logger(__name__)

HANDLER_MODULES = (chat, channels, ai, outbound, billing, plans, tips, calls, chain)


def all_handlers() -> dict[str, Handler]:
    found: dict[str, Handler] = {}
    for module in HANDLER_MODULES:
        for handler in module.handlers:
            if handler.actor in found:
                raise ValueError(f"{handler.actor} has two handlers")
            found[handler.actor] = handler
    if missing := set(ACTORS) - set(found):
        raise ValueError(f"no handler for {sorted(missing)}")
    if unknown := set(found) - set(ACTORS):
        raise ValueError(f"handlers for actors the registry does not declare: {sorted(unknown)}")
    return found


def build_actor(broker: dramatiq.Broker, spec: ActorSpec, handler: Handler, holder: ResourceHolder) -> dramatiq.Actor:
    async def run(command: dict[str, Any]) -> str:
        cmd = spec.model.model_validate(command)
        res = await holder.get()
        outcome = await handler.handle(res, cmd)
        await carry_out(res.emitter, res.publisher, outcome, res.pool)
        log.info("command.done", command_id=cmd.command_id, status=outcome.status, duplicate=not outcome.fresh)
        return outcome.log_status  # for the event log (workers/middleware/event_log.py)

    run.__name__ = run.__qualname__ = spec.name
    declare = dramatiq.actor(
        broker=broker,
        actor_name=spec.name,
        queue_name=spec.queue,
        **spec.retries.options(),
        failure_notice=(spec.notice, spec.notice_message) if spec.notice else None,
        on_give_up=handler.on_give_up,
        batch_of=spec.batch_of,
    )
    return declare(run)


def declare_actors(broker: dramatiq.Broker, holder: ResourceHolder) -> dict[str, dramatiq.Actor]:
    handlers = all_handlers()
    return {name: build_actor(broker, spec, handlers[name], holder) for name, spec in ACTORS.items()}
