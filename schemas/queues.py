"""Queue and actor names shared by the publishers (ingress) and the consumers (workers)."""

from typing import Final

CHAT_QUEUE: Final = "chat"
ALL_QUEUES: Final = (CHAT_QUEUE,)

SEND_MESSAGE_ACTOR: Final = "chat_send_message"
MARK_READ_ACTOR: Final = "chat_mark_read"
