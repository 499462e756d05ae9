"""Which queue each actor consumes and which command model it validates: the one registry.

Used to check commands that come from outside a live producer (``python -m scripts.replay
--from-file``); ``tests/unit/test_replay_file.py`` checks it against the actors the workers register.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

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
    SendChatMessage,
    SendOutbound,
)
from schemas.lemonsqueezy import LemonSqueezyOrder
from schemas.tips import SendTipCommand


@dataclass(frozen=True, slots=True)
class ActorSpec:
    queue: str
    model: type[Command]


ACTORS: Final[dict[str, ActorSpec]] = {
    q.SEND_MESSAGE_ACTOR: ActorSpec(q.CHAT_QUEUE, SendChatMessage),
    q.MARK_READ_ACTOR: ActorSpec(q.CHAT_QUEUE, MarkMessageRead),
    q.INBOUND_MESSAGE_ACTOR: ActorSpec(q.CHAT_QUEUE, InboundChannelMessage),
    q.STATUS_UPDATE_ACTOR: ActorSpec(q.CHAT_QUEUE, ChannelStatusUpdate),
    q.OPERATOR_REPLY_ACTOR: ActorSpec(q.CHAT_QUEUE, OperatorReply),
    q.TAKEOVER_ACTOR: ActorSpec(q.CHAT_QUEUE, ConversationTakeover),
    q.SEND_OUTBOUND_ACTOR: ActorSpec(q.OUTBOUND_QUEUE, SendOutbound),
    q.AGENT_REPLY_ACTOR: ActorSpec(q.AI_QUEUE, AgentReply),
    q.CLASSIFY_ACTOR: ActorSpec(q.AI_QUEUE, ClassifyMessage),
    q.STRIPE_PAYMENT_ACTOR: ActorSpec(q.BILLING_QUEUE, StripeEvent),
    q.STRIPE_SUBSCRIPTION_ACTOR: ActorSpec(q.BILLING_QUEUE, StripeEvent),
    q.LEMONSQUEEZY_ORDER_ACTOR: ActorSpec(q.BILLING_QUEUE, LemonSqueezyOrder),
    q.REPORT_USAGE_ACTOR: ActorSpec(q.BILLING_QUEUE, ReportUsage),
    q.SEND_TIP_ACTOR: ActorSpec(q.BILLING_QUEUE, SendTipCommand),
    q.CALL_METER_ACTOR: ActorSpec(q.BILLING_QUEUE, CallMeter),
    q.CHAIN_DEPOSIT_ACTOR: ActorSpec(q.CHAIN_QUEUE, ChainDeposit),
}


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
