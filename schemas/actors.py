"""The one registry of commands: for each actor, its queue, the command model it validates, how
its deliveries are retried, and what its sender is told when the workers give up on it.

The workers build every dramatiq actor from this table (``workers/actors.py``); ingress and
``python -m scripts.replay --from-file`` use it to check commands before they publish them.
Adding a command: its model, one line here (and its name in :mod:`schemas.queues`), a handler
in ``workers/``, and the ingress line that publishes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import pydantic

from domain.errors import PermanentFailure
from schemas import failure_notices as notices
from schemas import queues as q
from schemas.base import Command
from schemas.billing import ReportUsage, StripeEvent
from schemas.calls import CallMeter
from schemas.chain import ChainDeposit
from schemas.commands import (
    AgentReply,
    ChannelStatusUpdate,
    ClassifyMessage,
    ConversationTakeover,
    InboundChannelMessage,
    MarkMessageRead,
    OperatorReply,
    SendChatBatch,
    SendChatMessage,
    SendOutbound,
)
from schemas.emits import Emit
from schemas.lemonsqueezy import LemonSqueezyOrder
from schemas.tips import SendTipCommand


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """dramatiq's retry options for an actor. A command that fails validation, or raises
    :class:`PermanentFailure`, can never succeed and goes straight to dead letters."""

    max_retries: int
    min_backoff_ms: int = 200
    max_backoff_ms: int = 5_000
    time_limit_ms: int | None = None

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "max_retries": self.max_retries,
            "min_backoff": self.min_backoff_ms,
            "max_backoff": self.max_backoff_ms,
            "throws": (pydantic.ValidationError, PermanentFailure),
        }
        if self.time_limit_ms is not None:
            options["time_limit"] = self.time_limit_ms
        return options


# Transient faults (a database failover, a Redis blip) retry quickly.
QUICK: Final = RetryPolicy(max_retries=5, min_backoff_ms=200, max_backoff_ms=5_000)
# A delivery report can overtake the recording of the send it reports: give it longer.
PATIENT: Final = RetryPolicy(max_retries=10, min_backoff_ms=200, max_backoff_ms=30_000)
# Money must not be dropped on a transient fault: retry for about ten minutes, then dead-letter
# (the inbox records it as failed, so a replay of the provider's event applies it later).
PAYMENT: Final = RetryPolicy(max_retries=12, min_backoff_ms=500, max_backoff_ms=120_000)
CHAIN: Final = RetryPolicy(max_retries=10, min_backoff_ms=200, max_backoff_ms=10_000)
# Model failures are handled inside (tenacity, then agentError); dramatiq retries only our own
# transient faults (database, broker) a few times. A streamed reply may take minutes.
MODEL: Final = RetryPolicy(max_retries=3, min_backoff_ms=500, max_backoff_ms=5_000, time_limit_ms=10 * 60_000)
# Provider retries happen inside the send (tenacity); these retry a whole delivery.
DELIVERY: Final = RetryPolicy(max_retries=5, min_backoff_ms=500, max_backoff_ms=10_000)
ONCE: Final = RetryPolicy(max_retries=0)  # the next scheduled run does it again

FailureNotice = Callable[[Any, str], Emit]


@dataclass(frozen=True, slots=True)
class ActorSpec:
    name: str
    queue: str
    model: type[Command]
    retries: RetryPolicy
    # When retries are exhausted: the notice's builder and its message (nothing was applied).
    notice: FailureNotice | None = None
    notice_message: str = ""
    # A batch actor: its model's ``commands`` are commands of this actor, each failed closed, logged
    # and replayed as that actor's own (a batch message itself has no inbox or event-log row).
    batch_of: str | None = None


def _registry(*specs: ActorSpec) -> dict[str, ActorSpec]:
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"an actor is declared twice: {names}")
    return {s.name: s for s in specs}


# The registry reads as a table, one command per row: the formatter leaves it as written.
# fmt: off
ACTORS: Final[dict[str, ActorSpec]] = _registry(
    ActorSpec(q.SEND_MESSAGE_ACTOR, q.CHAT_QUEUE, SendChatMessage, QUICK,
              notices.chat_message, "the message could not be processed; nothing was charged"),
    ActorSpec(q.SEND_BATCH_ACTOR, q.CHAT_QUEUE, SendChatBatch, QUICK, batch_of=q.SEND_MESSAGE_ACTOR),
    ActorSpec(q.MARK_READ_ACTOR, q.CHAT_QUEUE, MarkMessageRead, QUICK),
    ActorSpec(q.INBOUND_MESSAGE_ACTOR, q.CHAT_QUEUE, InboundChannelMessage, QUICK),
    ActorSpec(q.STATUS_UPDATE_ACTOR, q.CHAT_QUEUE, ChannelStatusUpdate, PATIENT),
    ActorSpec(q.OPERATOR_REPLY_ACTOR, q.CHAT_QUEUE, OperatorReply, QUICK,
              notices.operator_reply, "the reply could not be processed; nothing was charged or sent"),
    ActorSpec(q.TAKEOVER_ACTOR, q.CHAT_QUEUE, ConversationTakeover, QUICK,
              notices.takeover, "the takeover could not be processed; nothing changed"),
    ActorSpec(q.SEND_OUTBOUND_ACTOR, q.OUTBOUND_QUEUE, SendOutbound, DELIVERY),
    ActorSpec(q.AGENT_REPLY_ACTOR, q.AI_QUEUE, AgentReply, MODEL),
    ActorSpec(q.CLASSIFY_ACTOR, q.AI_QUEUE, ClassifyMessage, MODEL),
    ActorSpec(q.STRIPE_PAYMENT_ACTOR, q.BILLING_QUEUE, StripeEvent, PAYMENT),
    ActorSpec(q.STRIPE_SUBSCRIPTION_ACTOR, q.BILLING_QUEUE, StripeEvent, QUICK),
    ActorSpec(q.LEMONSQUEEZY_ORDER_ACTOR, q.BILLING_QUEUE, LemonSqueezyOrder, PAYMENT),
    ActorSpec(q.REPORT_USAGE_ACTOR, q.BILLING_QUEUE, ReportUsage, ONCE),
    ActorSpec(q.SEND_TIP_ACTOR, q.BILLING_QUEUE, SendTipCommand, QUICK,
              notices.tip, "the tip could not be processed; no credits moved"),
    ActorSpec(q.CALL_METER_ACTOR, q.BILLING_QUEUE, CallMeter, QUICK,
              notices.call_meter, "the call meter could not apply this; nothing was charged for it"),
    ActorSpec(q.CHAIN_DEPOSIT_ACTOR, q.CHAIN_QUEUE, ChainDeposit, CHAIN),
)
# fmt: on


class UnknownActor(ValueError):
    pass


def validate_command(queue: str, actor: str, command: Any) -> Command:
    """The command as ``actor`` would validate it; UnknownActor or pydantic's ValidationError if not."""
    spec = ACTORS.get(actor)
    if spec is None:
        raise UnknownActor(f"unknown actor {actor!r}")
    if queue != spec.queue:
        raise UnknownActor(f"actor {actor!r} consumes queue {spec.queue!r}, not {queue!r}")
    return spec.model.model_validate(command)
