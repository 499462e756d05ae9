"""Handlers of the ``ai`` queue: the agent's replies (chat mentions, channel auto-replies) and
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

import time
import uuid
from dataclasses import dataclass

import structlog

from domain.agent import DEFAULT_PROMPT, context_messages
from domain.sanitize import sanitize_text
from infra.settings import Settings
from schemas.ai import MessageDelta
from schemas.channels import room_channel
from schemas.commands import AgentReply, ClassifyMessage
from schemas.queues import AGENT_REPLY_ACTOR, CLASSIFY_ACTOR
from workers import ai_service
from workers.deltas import DeltaCoalescer
from workers.effects import Outcome
from workers.handlers import Handlers
from workers.locks import SendLocks
from workers.providers.model import ModelClient, ModelError, ModelNotConfigured
from workers.resources import Component, Resources

log = structlog.get_logger(__name__)

CLASSIFY_PROMPT = (
    "Classify the customer's latest message in this conversation: its intent, your confidence,"
    " how close the customer is to buying (lead: hot, warm or cold) and a one-sentence summary."
)


@dataclass(slots=True)
class AiRuntime:
    """The model client and the per-trigger lock connection of one worker process."""

    model: ModelClient
    locks: SendLocks


def _open(settings: Settings) -> AiRuntime:
    return AiRuntime(ModelClient(settings), SendLocks(settings.database_url))


async def _close(runtime: AiRuntime) -> None:
    await runtime.model.close()
    await runtime.locks.close()


RUNTIME: Component[AiRuntime] = Component("ai", make=_open, close=_close)

handlers = Handlers()


def _lock_key(purpose: str, message_id: str) -> uuid.UUID:
    """A lock per (purpose, message): replying to a message and classifying it never block each
    other, and neither shares a key with the outbound send of the reply."""
    return uuid.uuid5(uuid.UUID(message_id), f"ai-{purpose}")


@handlers.on(AGENT_REPLY_ACTOR)
async def ai_reply(res: Resources, cmd: AgentReply) -> Outcome:
    rt = res.component(RUNTIME)
    async with rt.locks.hold(_lock_key("reply", cmd.trigger_message_id)) as held:
        if not held:
            log.info("ai.reply_in_progress_elsewhere", command_id=cmd.command_id)
            return Outcome(False, "applied")  # this delivery did nothing: another worker answers
        return await _answer(res, rt, cmd)


async def _answer(res: Resources, rt: AiRuntime, cmd: AgentReply) -> Outcome:
    s = res.settings
    policy = s.credit_policy
    inputs = await ai_service.reply_inputs(res.pool, cmd, policy, s.ai_context_messages, s.plan_catalog)
    if inputs.stored is not None:
        return inputs.stored  # answered before: no new call, no new charge
    if inputs.taken_over:  # an operator took the conversation over after this reply was queued
        return await ai_service.close_with(res.pool, cmd, [], reason="taken_over")
    if not rt.model.configured:
        notice = ai_service.agent_error(cmd, "not_configured", "The AI agent is not configured on this server.")
        return await ai_service.close_with(res.pool, cmd, [notice], reason="not_configured")
    refusal = ai_service.refusal_before_call(cmd, inputs, s.ai_min_credits, time.time(), policy, s.recharge_url)
    if refusal is not None:
        return await ai_service.close_with(res.pool, cmd, refusal.emits, reason=refusal.reason)

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
        return await ai_service.close_with(res.pool, cmd, [notice])
    except ModelError as exc:
        log.warning("ai.reply_failed", command_id=cmd.command_id, code=exc.code, attempts=exc.attempts)
        await ai_service.record_failed_call(res.pool, cmd, s.ai_model, exc.latency_ms, exc.code)
        notice = ai_service.agent_error(cmd, exc.code, f"The AI agent could not answer ({exc.code}); try again.")
        return await ai_service.close_with(res.pool, cmd, [notice], reason=exc.code)
    return await ai_service.store_reply(res.pool, cmd, completion, policy, s.ai_agent_name, s.recharge_url)


@handlers.on(CLASSIFY_ACTOR)
async def ai_classify(res: Resources, cmd: ClassifyMessage) -> Outcome:
    rt = res.component(RUNTIME)
    async with rt.locks.hold(_lock_key("classify", cmd.message_id)) as held:
        if not held:
            return Outcome(False, "applied")
        stored, history = await ai_service.classify_inputs(res.pool, cmd, res.settings.ai_context_messages)
        if stored is not None:
            return stored  # classified before: no new call
        if not rt.model.configured:
            return await ai_service.close_with(res.pool, cmd, [], reason="not_configured")
        return await _classify(res, rt, cmd, history)


async def _classify(res: Resources, rt: AiRuntime, cmd: ClassifyMessage, history: list[dict]) -> Outcome:
    messages = context_messages(CLASSIFY_PROMPT, history, ai_service.AGENT_USER_ID, res.settings.ai_context_messages)
    try:
        result, completion = await rt.model.classify(messages)
    except (ModelError, ModelNotConfigured) as exc:
        code = getattr(exc, "code", "not_configured")
        log.warning("ai.classify_failed", command_id=cmd.command_id, code=code)
        await ai_service.record_failed_call(res.pool, cmd, res.settings.ai_model, getattr(exc, "latency_ms", 0), code)
        return await ai_service.close_with(res.pool, cmd, [], reason=code)
    return await ai_service.store_classification(res.pool, cmd, result, completion)
