"""Commands built as an ingress node builds them, for tests that publish them straight to a queue."""

from __future__ import annotations

import time
import uuid

from schemas.commands import InboundChannelMessage, SendChatMessage, inbound_ids, send_command_ids
from schemas.queues import CHAT_QUEUE, INBOUND_MESSAGE_ACTOR
from tests.support.amqp import publish_commands


def chat_command(user: str, room: str, words: int, client_id: str | None = None) -> SendChatMessage:
    """``user`` sends ``words`` words to ``room``."""
    command_id, message_id = send_command_ids(user, client_id)
    return SendChatMessage(
        command_id=command_id,
        message_id=message_id,
        user_id=user,
        username=user,
        room_id=room,
        message="w " * words,
        client_message_id=client_id,
        accepted_at_ms=int(time.time() * 1000),
    )


def inbound_for(number: str, text: str, contact: str = "+34611111111") -> InboundChannelMessage:
    """A WhatsApp message from ``contact`` to a tenant's ``number``, as the Twilio webhook enqueues it."""
    sid = f"SM{uuid.uuid4().hex}"
    command_id, message_id = inbound_ids("twilio", sid)
    return InboundChannelMessage(
        command_id=command_id,
        message_id=message_id,
        provider="twilio",
        channel="twilio_whatsapp",
        address=number,
        contact=contact,
        contact_name="Lucía",
        provider_message_id=sid,
        text=text,
        received_at_ms=int(time.time() * 1000),
    )


async def publish_inbound(amqp_url: str, cmd: InboundChannelMessage) -> None:
    await publish_commands(amqp_url, CHAT_QUEUE, INBOUND_MESSAGE_ACTOR, [cmd])
