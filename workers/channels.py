"""Handlers of channel traffic on the ``chat`` queue: inbound messages, operator replies, delivery
reports, operators taking conversations over."""

from __future__ import annotations

import structlog

from schemas.commands import ChannelStatusUpdate, ConversationTakeover, InboundChannelMessage, OperatorReply
from schemas.queues import INBOUND_MESSAGE_ACTOR, OPERATOR_REPLY_ACTOR, STATUS_UPDATE_ACTOR, TAKEOVER_ACTOR
from workers import channel_service, takeover_service
from workers.effects import Outcome
from workers.handlers import Handlers
from workers.resources import Resources

log = structlog.get_logger(__name__)

handlers = Handlers()


@handlers.on(INBOUND_MESSAGE_ACTOR)
async def inbound_message(res: Resources, cmd: InboundChannelMessage) -> Outcome:
    s = res.settings
    outcome = await channel_service.inbound_message(res.pool, cmd, s.credit_policy, s.recharge_url)
    if outcome.status == "rejected" and outcome.fresh:
        log.warning("channel.unknown_destination", command_id=cmd.command_id, channel=cmd.channel, address=cmd.address)
        await res.redis.incr(s.key("stats", "unknown_destination"))
    return outcome


@handlers.on(OPERATOR_REPLY_ACTOR)
async def operator_reply(res: Resources, cmd: OperatorReply) -> Outcome:
    s = res.settings
    return await channel_service.operator_reply(res.pool, cmd, s.credit_policy, s.recharge_url)


@handlers.on(STATUS_UPDATE_ACTOR)
async def status_update(res: Resources, cmd: ChannelStatusUpdate) -> Outcome:
    return await channel_service.status_update(res.pool, cmd)


@handlers.on(TAKEOVER_ACTOR)
async def take_over(res: Resources, cmd: ConversationTakeover) -> Outcome:
    outcome = await takeover_service.take_over(res.pool, cmd)
    log.info("channel.takeover", command_id=cmd.command_id, conversation_id=cmd.conversation_id, release=cmd.release)
    return outcome
