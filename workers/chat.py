"""Handlers of the ``chat`` queue's own commands: a chat message, a read mark."""

from __future__ import annotations

from schemas.commands import MarkMessageRead, SendChatMessage
from schemas.queues import MARK_READ_ACTOR, SEND_MESSAGE_ACTOR
from workers import chat_service
from workers.effects import Outcome
from workers.handlers import Handlers
from workers.resources import Resources

handlers = Handlers()


@handlers.on(SEND_MESSAGE_ACTOR)
async def send_message(res: Resources, cmd: SendChatMessage) -> Outcome:
    s = res.settings
    outcome = await chat_service.send_message(
        res.pool, cmd, s.credit_policy, s.signup_credits, s.recharge_url, s.ai_agent_handle, s.plan_catalog
    )
    if outcome.fresh:
        counter = "delivered" if outcome.status == "applied" else "blocked"
        await res.redis.incr(s.key("stats", counter))
    return outcome


@handlers.on(MARK_READ_ACTOR)
async def mark_read(res: Resources, cmd: MarkMessageRead) -> Outcome:
    return await chat_service.mark_read(res.pool, cmd)
