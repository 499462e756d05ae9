"""Handlers of the ``chain`` queue: confirmed BEZ deposits published by the chain watcher."""

from __future__ import annotations

from schemas.chain import ChainDeposit
from schemas.queues import CHAIN_DEPOSIT_ACTOR
from workers import chain_service
from workers.effects import Outcome
from workers.handlers import Handlers
from workers.resources import Resources

handlers = Handlers()


@handlers.on(CHAIN_DEPOSIT_ACTOR)
async def chain_deposit(res: Resources, cmd: ChainDeposit) -> Outcome:
    return await chain_service.apply_deposit(res.pool, cmd, res.settings.signup_credits)
