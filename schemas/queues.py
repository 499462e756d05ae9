"""Queue and actor names shared by the publishers (ingress, workers) and the consumers (workers)."""

from typing import Final

CHAT_QUEUE: Final = "chat"
OUTBOUND_QUEUE: Final = "outbound"
AI_QUEUE: Final = "ai"
BILLING_QUEUE: Final = "billing"  # payments, plans, tips, calls: credits moving in and between people
CHAIN_QUEUE: Final = "chain"  # on-chain BEZ deposits
ALL_QUEUES: Final = (CHAT_QUEUE, OUTBOUND_QUEUE, AI_QUEUE, BILLING_QUEUE, CHAIN_QUEUE)

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
