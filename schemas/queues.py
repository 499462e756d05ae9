"""Queue and actor names shared by the publishers (ingress, workers) and the consumers (workers)."""

from typing import Final

CHAT_QUEUE: Final = "chat"
OUTBOUND_QUEUE: Final = "outbound"
ALL_QUEUES: Final = (CHAT_QUEUE, OUTBOUND_QUEUE)

SEND_MESSAGE_ACTOR: Final = "chat_send_message"
MARK_READ_ACTOR: Final = "chat_mark_read"
INBOUND_MESSAGE_ACTOR: Final = "channel_inbound_message"
STATUS_UPDATE_ACTOR: Final = "channel_status_update"
OPERATOR_REPLY_ACTOR: Final = "channel_operator_reply"
SEND_OUTBOUND_ACTOR: Final = "outbound_send"
