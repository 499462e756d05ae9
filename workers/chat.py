"""Actors of the ``chat`` queue."""

from __future__ import annotations

from typing import Any

import dramatiq
import pydantic
import structlog

from schemas.channels import user_channel
from schemas.commands import MarkMessageRead, SendChatMessage
from schemas.queues import CHAT_QUEUE, MARK_READ_ACTOR, SEND_MESSAGE_ACTOR
from schemas.socket_events import CommandFailed
from workers import chat_service
from workers.broker import resources
from workers.effects import carry_out
from workers.emits import emit, publish
from workers.fail_closed import on_failure
from workers.resources import Resources

log = structlog.get_logger(__name__)

# Transient faults (a database failover, a Redis blip) retry quickly; a command
# that fails validation can never succeed and goes straight to dead letters.
RETRY_POLICY: dict[str, Any] = {
    "max_retries": 5,
    "min_backoff": 200,
    "max_backoff": 5_000,
    "throws": (pydantic.ValidationError,),
}


@dramatiq.actor(queue_name=CHAT_QUEUE, actor_name=SEND_MESSAGE_ACTOR, **RETRY_POLICY)
async def chat_send_message(command: dict[str, Any]) -> str:
    cmd = SendChatMessage.model_validate(command)
    res = await resources.get()
    s = res.settings
    outcome = await chat_service.send_message(
        res.pool, cmd, s.credit_policy, s.signup_credits, s.recharge_url, s.ai_agent_handle, s.plan_catalog
    )
    await carry_out(res.emitter, res.publisher, outcome)
    if outcome.fresh:
        counter = "delivered" if outcome.status == "applied" else "blocked"
        await res.redis.incr(s.key("stats", counter))
    log.info("command.done", command_id=cmd.command_id, status=outcome.status, duplicate=not outcome.fresh)
    return outcome.log_status  # for the event log (workers/event_log.py)


@dramatiq.actor(queue_name=CHAT_QUEUE, actor_name=MARK_READ_ACTOR, **RETRY_POLICY)
async def chat_mark_read(command: dict[str, Any]) -> str:
    cmd = MarkMessageRead.model_validate(command)
    res = await resources.get()
    outcome = await chat_service.mark_read(res.pool, cmd)
    await carry_out(res.emitter, res.publisher, outcome)
    return outcome.log_status


@on_failure(SEND_MESSAGE_ACTOR)
async def _send_failed(res: Resources, command: dict[str, Any], exc: BaseException) -> None:
    cmd = SendChatMessage.model_validate(command)
    notice = CommandFailed(
        code="internal",
        message="the message could not be processed; nothing was charged",
        messageId=cmd.message_id,
        clientMessageId=cmd.client_message_id,
        roomId=cmd.room_id,
    )
    await publish(res.emitter, [emit("error", user_channel(cmd.user_id), notice.model_dump(mode="json"))])
