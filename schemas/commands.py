"""Commands that ingress publishes and workers apply. ``command_id`` is the idempotency key."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field

from schemas.base import Command

_MESSAGE_NS = uuid.UUID("6f1c4c83-9a51-4d4b-9d0e-7b8c0b0f5a11")


def send_command_ids(user_id: str, client_message_id: str | None) -> tuple[str, str]:
    """(command_id, message_id) for a send: deterministic when the client names it."""
    if client_message_id is None:
        message_id = str(uuid.uuid4())
        return f"msg:{message_id}", message_id
    command_id = f"msg:{user_id}:{client_message_id}"
    return command_id, str(uuid.uuid5(_MESSAGE_NS, command_id))


class SendChatMessage(Command):
    type: Literal["chat.send_message"] = "chat.send_message"
    command_id: str = Field(min_length=1, max_length=300)
    message_id: str
    user_id: str
    username: str
    room_id: str
    message: str
    client_message_id: str | None = None
    accepted_at_ms: int


class MarkMessageRead(Command):
    type: Literal["chat.mark_read"] = "chat.mark_read"
    command_id: str
    user_id: str
    room_id: str
    message_id: str
