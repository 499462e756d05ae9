"""Handlers of the ``chat`` queue's own commands: a chat message, a batch of them, a read mark."""

from __future__ import annotations

from dataclasses import replace

import structlog

from infra import inbox
from infra.settings import Settings
from schemas.actors import ACTORS
from schemas.channels import APPLIED_CHANNEL, APPLIED_EVENT
from schemas.commands import MarkMessageRead, SendChatBatch, SendChatMessage
from schemas.queues import CHAT_QUEUE, MARK_READ_ACTOR, SEND_BATCH_ACTOR, SEND_MESSAGE_ACTOR
from workers import chat_batch, chat_service
from workers.db_retry import retry_transient
from workers.effects import Outcome
from workers.emits import Emit, emit
from workers.handlers import Handlers
from workers.resources import Resources

log = structlog.get_logger(__name__)

handlers = Handlers()

# A chat partition is consumed one message at a time, so that one room's sends are applied in the
# order they were published (schemas/queues.py). dramatiq's retries would put a failed message
# behind the others: after an error that says nothing about the commands (a lost connection, a
# database restart, a deadlock) the message is retried where it stands for up to this long, and
# the partition waits. Past that, dramatiq's retries take over and it is applied after those
# behind it. Safe: each attempt is one transaction, and one that committed before its connection
# broke replays its stored outcome (the inbox).
IN_PLACE_RETRY_S = 20.0


def chat_terms(s: Settings) -> chat_service.ChatTerms:
    return chat_service.ChatTerms(s.credit_policy, s.signup_credits, s.recharge_url, s.ai_agent_handle, s.plan_catalog)


def _count(res: Resources, outcomes: list[Outcome]) -> None:
    """The delivered/blocked statistics (a duplicate counts nothing), added to Redis about once a second."""
    delivered = sum(1 for o in outcomes if o.fresh and o.status == "applied")
    blocked = sum(1 for o in outcomes if o.fresh and o.status != "applied")
    if delivered:
        res.counter("delivered").add(delivered)
    if blocked:
        res.counter("blocked").add(blocked)


@handlers.on(SEND_MESSAGE_ACTOR)
async def send_message(res: Resources, cmd: SendChatMessage) -> Outcome:
    s = res.settings
    outcome = await retry_transient(
        lambda: chat_service.send_message(
            res.pool, cmd, s.credit_policy, s.signup_credits, s.recharge_url, s.ai_agent_handle, s.plan_catalog
        ),
        within_s=IN_PLACE_RETRY_S,
        log_event="chat.retry_in_place",
    )
    _count(res, [outcome])
    return _with_applied_notice(outcome, [cmd.message_id])


@handlers.on(SEND_BATCH_ACTOR)
async def send_batch(res: Resources, batch: SendChatBatch) -> Outcome:
    """Every message of the batch in one transaction; their effects go out together after it."""
    terms = chat_terms(res.settings)
    result = await retry_transient(
        lambda: chat_batch.apply_batch(res.pool, batch.commands, terms),
        within_s=IN_PLACE_RETRY_S,
        log_event="chat.retry_in_place",
    )
    outcomes = [outcome for _, outcome in result.applied]
    emits: list[Emit] = [e for o in outcomes for e in o.emits]
    for cmd, exc in result.poisoned:
        emits += await fail_alone(res, cmd, exc)
    _count(res, outcomes)
    log.info(
        "chat.batch_done",
        commands=len(batch.commands),
        applied=sum(1 for o in outcomes if o.fresh and o.status == "applied"),
        rejected=sum(1 for o in outcomes if o.fresh and o.status == "rejected"),
        duplicates=sum(1 for o in outcomes if not o.fresh),
        failed=len(result.poisoned),
        command_ids=[cmd.command_id for cmd in batch.commands],
    )
    fresh = any(o.fresh for o in outcomes) or bool(result.poisoned)
    follow_ups = [f for o in outcomes for f in o.follow_ups]
    outcome = Outcome(fresh, "applied", emits, follow_ups, tuple(i for o in outcomes for i in o.emitted_ids))
    return _with_applied_notice(outcome, [cmd.message_id for cmd in batch.commands])


def _with_applied_notice(outcome: Outcome, message_ids: list[str]) -> Outcome:
    """The outcome, with the notice that tells the publishing node these sends were answered (its
    backlog measure, ingress/chat_backlog.py). Published with the results, never stored: a replay
    publishes a notice of its own, so a resend that sends nothing else still answers its node."""
    notice = emit(APPLIED_EVENT, APPLIED_CHANNEL, {"messageIds": message_ids})
    return replace(outcome, emits=[*outcome.emits, notice])


async def fail_alone(res: Resources, cmd: SendChatMessage, exc: BaseException) -> list[Emit]:
    """Fail one poison command of a batch closed, as the single actor would have after its retries:
    recorded ``failed`` in the inbox (a replay may apply it later), put on the dead-letter queue,
    and its sender told that nothing was charged. Returns that notice."""
    log.error("command.failed", command_id=cmd.command_id, actor=SEND_MESSAGE_ACTOR, error=repr(exc))
    recorded = await inbox.record_failure(res.pool, cmd.command_id, cmd.type, cmd.user_id, repr(exc))
    await res.publisher.dead_letter(CHAT_QUEUE, SEND_MESSAGE_ACTOR, cmd.model_dump(mode="json"), repr(exc))
    spec = ACTORS[SEND_MESSAGE_ACTOR]
    if not recorded or spec.notice is None:  # applied meanwhile by another delivery
        return []
    return [spec.notice(cmd, spec.notice_message)]


@handlers.on(MARK_READ_ACTOR)
async def mark_read(res: Resources, cmd: MarkMessageRead) -> Outcome:
    return await chat_service.mark_read(res.pool, cmd)
