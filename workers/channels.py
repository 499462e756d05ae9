"""Actors for channel traffic on the ``chat`` queue: inbound messages, operator replies, delivery reports,
operators taking conversations over."""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog

from domain.channels import conversation_room
from schemas.channels import user_channel
from schemas.commands import ChannelStatusUpdate, ConversationTakeover, InboundChannelMessage, OperatorReply
from schemas.queues import CHAT_QUEUE, INBOUND_MESSAGE_ACTOR, OPERATOR_REPLY_ACTOR, STATUS_UPDATE_ACTOR, TAKEOVER_ACTOR
from schemas.socket_events import CommandFailed
from workers import channel_service, takeover_service
from workers.broker import resources
from workers.chat import RETRY_POLICY
from workers.effects import carry_out
from workers.emits import emit, publish
from workers.fail_closed import on_failure
from workers.resources import Resources

log = structlog.get_logger(__name__)

# A delivery report can overtake the recording of the send it reports: give it longer.
STATUS_RETRY_POLICY: dict[str, Any] = {**RETRY_POLICY, "max_retries": 10, "max_backoff": 30_000}


@dramatiq.actor(queue_name=CHAT_QUEUE, actor_name=INBOUND_MESSAGE_ACTOR, **RETRY_POLICY)
async def channel_inbound_message(command: dict[str, Any]) -> str:
    cmd = InboundChannelMessage.model_validate(command)
    res = await resources.get()
    s = res.settings
    outcome = await channel_service.inbound_message(res.pool, cmd, s.credit_policy, s.recharge_url)
    await carry_out(res.emitter, res.publisher, outcome)
    if outcome.status == "rejected" and outcome.fresh:
        log.warning("channel.unknown_destination", command_id=cmd.command_id, channel=cmd.channel,
                    address=cmd.address)  # fmt: skip
        await res.redis.incr(s.key("stats", "unknown_destination"))
    log.info("command.done", command_id=cmd.command_id, status=outcome.status, duplicate=not outcome.fresh)
    return outcome.log_status  # for the event log (workers/event_log.py)


@dramatiq.actor(queue_name=CHAT_QUEUE, actor_name=OPERATOR_REPLY_ACTOR, **RETRY_POLICY)
async def channel_operator_reply(command: dict[str, Any]) -> str:
    cmd = OperatorReply.model_validate(command)
    res = await resources.get()
    s = res.settings
    outcome = await channel_service.operator_reply(res.pool, cmd, s.credit_policy, s.recharge_url)
    await carry_out(res.emitter, res.publisher, outcome)
    log.info("command.done", command_id=cmd.command_id, status=outcome.status, duplicate=not outcome.fresh)
    return outcome.log_status


@dramatiq.actor(queue_name=CHAT_QUEUE, actor_name=STATUS_UPDATE_ACTOR, **STATUS_RETRY_POLICY)
async def channel_status_update(command: dict[str, Any]) -> str:
    cmd = ChannelStatusUpdate.model_validate(command)
    res = await resources.get()
    outcome = await channel_service.status_update(res.pool, cmd)
    await carry_out(res.emitter, res.publisher, outcome)
    return outcome.log_status


@dramatiq.actor(queue_name=CHAT_QUEUE, actor_name=TAKEOVER_ACTOR, **RETRY_POLICY)
async def channel_take_over(command: dict[str, Any]) -> str:
    cmd = ConversationTakeover.model_validate(command)
    res = await resources.get()
    outcome = await takeover_service.take_over(res.pool, cmd)
    await carry_out(res.emitter, res.publisher, outcome)
    log.info("command.done", command_id=cmd.command_id, status=outcome.status, duplicate=not outcome.fresh,
             conversation_id=cmd.conversation_id, release=cmd.release)  # fmt: skip
    return outcome.log_status


@on_failure(TAKEOVER_ACTOR)
async def _takeover_failed(res: Resources, command: dict[str, Any], exc: BaseException) -> None:
    cmd = ConversationTakeover.model_validate(command)
    notice = CommandFailed(
        code="internal",
        message="the takeover could not be processed; nothing changed",
        roomId=conversation_room(cmd.tenant_id, cmd.conversation_id),
    )
    data = {**notice.model_dump(mode="json"), "event": takeover_service.EVENT}
    await publish(res.emitter, [emit("error", user_channel(cmd.operator_id), data)])


@on_failure(OPERATOR_REPLY_ACTOR)
async def _reply_failed(res: Resources, command: dict[str, Any], exc: BaseException) -> None:
    cmd = OperatorReply.model_validate(command)
    notice = CommandFailed(
        code="internal",
        message="the reply could not be processed; nothing was charged or sent",
        messageId=cmd.message_id,
        clientMessageId=cmd.client_message_id,
    )
    await publish(res.emitter, [emit("error", user_channel(cmd.operator_id), notice.model_dump(mode="json"))])
