"""Actors of the ``ai`` queue: the agent's replies (chat mentions, channel auto-replies) and
the classification of inbound channel messages.

Model calls wait on the network, not the CPU: every call is an ``await`` on the worker
process's event loop, and each dramatiq worker thread waits for one of them, so calls in
flight per process = ``--threads`` (run this queue with many: ``--queues ai --threads 256``).

At most one reply per triggering message: a stored reply is re-published, never re-asked;
a duplicate delivered while another worker is answering the same trigger finds it held
(:class:`workers.locks.SendLocks`) and leaves it to that worker, whose own delivery stays
unacked until it is done, so a crash there gets redelivered.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import dramatiq
import pydantic
import structlog

from domain.agent import DEFAULT_PROMPT, context_messages, has_enough_for_a_call
from domain.sanitize import sanitize_text
from infra import receivables
from infra.settings import Settings
from schemas.ai import MessageDelta
from schemas.channels import room_channel, user_channel
from schemas.commands import AgentReply, ClassifyMessage
from schemas.queues import AGENT_REPLY_ACTOR, AI_QUEUE, CLASSIFY_ACTOR
from workers import ai_service
from workers.broker import resources, settings, shutdown
from workers.deltas import DeltaCoalescer
from workers.effects import Outcome, carry_out
from workers.emits import emit
from workers.locks import SendLocks
from workers.providers.model import ModelClient, ModelError, ModelNotConfigured
from workers.resources import Resources

log = structlog.get_logger(__name__)

# Model failures are handled inside (tenacity, then agentError); dramatiq retries only
# our own transient faults (database, broker) a few times.
AI_RETRY_POLICY: dict[str, Any] = {
    "max_retries": 3,
    "min_backoff": 500,
    "max_backoff": 5_000,
    "throws": (pydantic.ValidationError,),
    "time_limit": 10 * 60_000,
}


CLASSIFY_PROMPT = (
    "Classify the customer's latest message in this conversation: its intent, your confidence,"
    " how close the customer is to buying (lead: hot, warm or cold) and a one-sentence summary."
)


@dataclass(slots=True)
class AiRuntime:
    model: ModelClient
    locks: SendLocks


class AiRuntimeHolder:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runtime: AiRuntime | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> AiRuntime:
        if self._runtime is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._runtime is None:
                    self._runtime = AiRuntime(ModelClient(self._settings), SendLocks(self._settings.database_url))
        return self._runtime

    async def close(self) -> None:
        if self._runtime is not None:
            await self._runtime.model.close()
            await self._runtime.locks.close()
            self._runtime = None


def _lock_key(purpose: str, message_id: str) -> uuid.UUID:
    """A lock per (purpose, message): replying to a message and classifying it never block each
    other, and neither shares a key with the outbound send of the reply."""
    return uuid.uuid5(uuid.UUID(message_id), f"ai-{purpose}")


runtime = AiRuntimeHolder(settings)
shutdown.register(runtime.close)


@dramatiq.actor(queue_name=AI_QUEUE, actor_name=AGENT_REPLY_ACTOR, **AI_RETRY_POLICY)
async def ai_reply(command: dict[str, Any]) -> str:
    cmd = AgentReply.model_validate(command)
    res, rt = await resources.get(), await runtime.get()
    async with rt.locks.hold(_lock_key("reply", cmd.trigger_message_id)) as held:
        if not held:
            log.info("ai.reply_in_progress_elsewhere", command_id=cmd.command_id)
            return "duplicate"  # for the event log (workers/event_log.py): this delivery did nothing
        done = await _answer(res, rt, cmd)
    await carry_out(res.emitter, res.publisher, done)
    return done.log_status


async def _answer(res: Resources, rt: AiRuntime, cmd: AgentReply) -> Outcome:
    s = res.settings
    policy = s.credit_policy
    inputs = await ai_service.reply_inputs(res.pool, cmd, policy, s.ai_context_messages, s.plan_catalog)
    if inputs.stored is not None:
        return inputs.stored  # answered before: no new call, no new charge
    if inputs.taken_over:  # an operator took the conversation over after this reply was queued
        return await ai_service.close_with(res.pool, cmd.command_id, cmd.type, cmd.asker_user_id, [],
                                           reason="taken_over")  # fmt: skip
    if not rt.model.configured:
        notice = ai_service.agent_error(cmd, "not_configured", "The AI agent is not configured on this server.")
        return await ai_service.close_with(res.pool, cmd.command_id, cmd.type, cmd.asker_user_id, [notice],
                                           reason="not_configured")  # fmt: skip
    if inputs.owed > inputs.credits:
        error = ai_service.credit_error(cmd, inputs.owed, inputs.credits, inputs.words_left, s.recharge_url,
                                        receivables.debt_message(inputs.owed))  # fmt: skip
        return await ai_service.close_with(res.pool, cmd.command_id, cmd.type, cmd.asker_user_id, [error],
                                           reason="receivable_outstanding")  # fmt: skip
    if not has_enough_for_a_call(inputs.available, s.ai_min_credits, policy.words_per_credit):
        error = ai_service.credit_error(
            cmd, s.ai_min_credits, inputs.credits, inputs.words_left, s.recharge_url,
            f"The AI agent needs at least {s.ai_min_credits} credit(s) before it answers.",
        )  # fmt: skip
        return await ai_service.close_with(res.pool, cmd.command_id, cmd.type, cmd.asker_user_id, [error],
                                           reason="insufficient_credits")  # fmt: skip
    if cmd.asker_user_id and (block := inputs.quota):
        notice = emit("quotaExceeded", user_channel(cmd.asker_user_id), block.event(cmd.reply_id, None, cmd.room_id))
        return await ai_service.close_with(res.pool, cmd.command_id, cmd.type, cmd.asker_user_id, [notice],
                                           reason="quota_exceeded")  # fmt: skip

    prompt = inputs.system_prompt or DEFAULT_PROMPT.format(name=s.ai_agent_name)
    messages = context_messages(prompt, inputs.history, ai_service.AGENT_USER_ID, s.ai_context_messages)
    room = room_channel(cmd.room_id)

    async def send_delta(text: str) -> None:
        # A preview of untrusted output: inert like the final text (a tag split across two
        # deltas is escaped, not rendered).
        event = MessageDelta(
            messageId=cmd.reply_id, roomId=cmd.room_id, replyTo=cmd.trigger_message_id, delta=sanitize_text(text)
        )
        await res.emitter.emit("messageDelta", event.model_dump(mode="json"), namespace="/", room=room)

    deltas = DeltaCoalescer(send_delta, s.ai_delta_interval_ms / 1000)
    try:
        completion = await rt.model.stream_reply(messages, deltas.add)
        await deltas.flush()
    except ModelNotConfigured:
        notice = ai_service.agent_error(cmd, "not_configured", "The AI agent is not configured on this server.")
        return await ai_service.close_with(res.pool, cmd.command_id, cmd.type, cmd.asker_user_id, [notice])
    except ModelError as exc:
        log.warning("ai.reply_failed", command_id=cmd.command_id, code=exc.code, attempts=exc.attempts)
        purpose = "auto_reply" if cmd.conversation_id else "reply"
        await ai_service.record_call(res.pool, cmd.command_id, purpose, cmd.asker, cmd.tenant_id, s.ai_model, None,
                                     latency_ms=exc.latency_ms, error_code=exc.code)  # fmt: skip
        notice = ai_service.agent_error(cmd, exc.code, f"The AI agent could not answer ({exc.code}); try again.")
        return await ai_service.close_with(res.pool, cmd.command_id, cmd.type, cmd.asker_user_id, [notice],
                                           reason=exc.code)  # fmt: skip
    return await ai_service.store_reply(res.pool, cmd, completion, policy, s.ai_agent_name, s.recharge_url)


@dramatiq.actor(queue_name=AI_QUEUE, actor_name=CLASSIFY_ACTOR, **AI_RETRY_POLICY)
async def ai_classify(command: dict[str, Any]) -> str:
    cmd = ClassifyMessage.model_validate(command)
    res, rt = await resources.get(), await runtime.get()
    async with rt.locks.hold(_lock_key("classify", cmd.message_id)) as held:
        if not held:
            return "duplicate"
        stored, history = await ai_service.classify_inputs(res.pool, cmd, res.settings.ai_context_messages)
        if stored is not None:
            outcome = stored  # classified before: no new call
        elif not rt.model.configured:
            closed = await ai_service.close_with(res.pool, cmd.command_id, cmd.type, None, [], reason="not_configured")
            return closed.log_status
        else:
            outcome = await _classify(res, rt, cmd, history)
    await carry_out(res.emitter, res.publisher, outcome)
    return outcome.log_status


async def _classify(res: Resources, rt: AiRuntime, cmd: ClassifyMessage, history: list[dict]) -> Outcome:
    messages = context_messages(CLASSIFY_PROMPT, history, ai_service.AGENT_USER_ID, res.settings.ai_context_messages)
    try:
        result, completion = await rt.model.classify(messages)
    except (ModelError, ModelNotConfigured) as exc:
        code = getattr(exc, "code", "not_configured")
        log.warning("ai.classify_failed", command_id=cmd.command_id, code=code)
        await ai_service.record_call(res.pool, cmd.command_id, "classify", f"tenant:{cmd.tenant_id}",
                                     cmd.tenant_id, res.settings.ai_model, None,
                                     latency_ms=getattr(exc, "latency_ms", 0), error_code=code)  # fmt: skip
        return await ai_service.close_with(res.pool, cmd.command_id, cmd.type, None, [], reason=code)
    return await ai_service.store_classification(res.pool, cmd, result, completion)
