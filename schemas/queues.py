"""Queue and actor names shared by the publishers (ingress, workers) and the consumers (workers)."""

from typing import Final

CHAT_QUEUE: Final = "chat"
OUTBOUND_QUEUE: Final = "outbound"
AI_QUEUE: Final = "ai"
ALL_QUEUES: Final = (CHAT_QUEUE, OUTBOUND_QUEUE, AI_QUEUE)

SEND_MESSAGE_ACTOR: Final = "chat_send_message"
MARK_READ_ACTOR: Final = "chat_mark_read"
INBOUND_MESSAGE_ACTOR: Final = "channel_inbound_message"
STATUS_UPDATE_ACTOR: Final = "channel_status_update"
OPERATOR_REPLY_ACTOR: Final = "channel_operator_reply"
SEND_OUTBOUND_ACTOR: Final = "outbound_send"
AGENT_REPLY_ACTOR: Final = "ai_reply"
CLASSIFY_ACTOR: Final = "ai_classify"
