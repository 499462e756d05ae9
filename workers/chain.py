"""Actors of the ``chain`` queue: confirmed BEZ deposits published by the chain watcher."""

from __future__ import annotations

from typing import Any

import dramatiq
import pydantic
import structlog

from schemas.chain import ChainDeposit
from schemas.queues import CHAIN_DEPOSIT_ACTOR, CHAIN_QUEUE
from workers import chain_service
from workers.broker import resources
from workers.effects import carry_out

log = structlog.get_logger(__name__)

RETRY_POLICY: dict[str, Any] = {
    "max_retries": 10,
    "min_backoff": 200,
    "max_backoff": 10_000,
    "throws": (pydantic.ValidationError,),
}


@dramatiq.actor(queue_name=CHAIN_QUEUE, actor_name=CHAIN_DEPOSIT_ACTOR, **RETRY_POLICY)
async def chain_deposit(command: dict[str, Any]) -> str:
    cmd = ChainDeposit.model_validate(command)
    res = await resources.get()
    outcome = await chain_service.apply_deposit(res.pool, cmd, res.settings.signup_credits)
    await carry_out(res.emitter, res.publisher, outcome)
    log.info("chain.deposit.done", command_id=cmd.command_id, duplicate=not outcome.fresh)
    return outcome.log_status  # for the event log (workers/event_log.py)
