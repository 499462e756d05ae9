"""Queue and actor names shared by the publishers (ingress, workers) and the consumers (workers)."""

import zlib
from typing import Final

CHAT_QUEUE: Final = "chat"
OUTBOUND_QUEUE: Final = "outbound"
AI_QUEUE: Final = "ai"
BILLING_QUEUE: Final = "billing"  # payments, plans, tips, calls: credits moving in and between people
CHAIN_QUEUE: Final = "chain"  # on-chain BEZ deposits
ALL_QUEUES: Final = (CHAT_QUEUE, OUTBOUND_QUEUE, AI_QUEUE, BILLING_QUEUE, CHAIN_QUEUE)  # the capabilities

# Chat sends are published to a partition of the chat capability chosen by their room, so that one
# room's sends are applied and delivered in the order they were published: each partition queue has
# one active consumer in the whole pool (RabbitMQ's single active consumer) that takes one message
# at a time. Every node must use the same count; changing it remaps rooms, and sends in flight
# during the switch may be applied out of order. The plain ``chat`` queue keeps everything else
# (marks read, channel messages, retried and replayed single commands).
CHAT_PARTITIONS: Final = 4
CHAT_PARTITION_QUEUES: Final = tuple(f"{CHAT_QUEUE}.p{i}" for i in range(CHAT_PARTITIONS))
WORK_QUEUES: Final = (*ALL_QUEUES, *CHAT_PARTITION_QUEUES)  # every queue a worker consumes


def chat_partition(room_id: str) -> str:
    """The partition queue of a room's chat sends (a stable hash: the same on every node)."""
    return CHAT_PARTITION_QUEUES[zlib.crc32(room_id.encode()) % CHAT_PARTITIONS]


def is_partition(queue: str) -> bool:
    return queue in CHAT_PARTITION_QUEUES


def queues_of(capability: str) -> tuple[str, ...]:
    """The work queues of a capability: chat's are ``chat`` and its partitions."""
    return (capability, *CHAT_PARTITION_QUEUES) if capability == CHAT_QUEUE else (capability,)


def capability_of(queue: str) -> str:
    """The capability a work queue serves (``chat.p3`` -> ``chat``)."""
    return CHAT_QUEUE if is_partition(queue) else queue


SEND_MESSAGE_ACTOR: Final = "chat_send_message"
MARK_READ_ACTOR: Final = "chat_mark_read"
SEND_BATCH_ACTOR: Final = "chat_send_batch"  # many chat sends in one message (ingress flushers)
INBOUND_MESSAGE_ACTOR: Final = "channel_inbound_message"
STATUS_UPDATE_ACTOR: Final = "channel_status_update"
OPERATOR_REPLY_ACTOR: Final = "channel_operator_reply"
TAKEOVER_ACTOR: Final = "channel_take_over"
SEND_OUTBOUND_ACTOR: Final = "outbound_send"
AGENT_REPLY_ACTOR: Final = "ai_reply"
CLASSIFY_ACTOR: Final = "ai_classify"
STRIPE_PAYMENT_ACTOR: Final = "billing_stripe_payment"  # checkout.session.*, charge.*
STRIPE_SUBSCRIPTION_ACTOR: Final = "billing_stripe_subscription"  # customer.subscription.*, invoice.*
LEMONSQUEEZY_ORDER_ACTOR: Final = "billing_lemonsqueezy_order"
REPORT_USAGE_ACTOR: Final = "billing_report_usage"  # AI token usage to Stripe meter events
SEND_TIP_ACTOR: Final = "billing_send_tip"
CALL_METER_ACTOR: Final = "billing_call_meter"
CHAIN_DEPOSIT_ACTOR: Final = "chain_deposit"
