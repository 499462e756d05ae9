"""Commands that ingress publishes and workers apply. ``command_id`` is the idempotency key."""

from __future__ import annotations

import hashlib
import uuid
from typing import Literal

from pydantic import Field

from schemas.base import Command
from schemas.storable import EpochMs

_MESSAGE_NS = uuid.UUID("6f1c4c83-9a51-4d4b-9d0e-7b8c0b0f5a11")


def scoped_id(prefix: str, *parts: str) -> str:
    """An id that is the same for the same parts and differs for any others (two or more parts).

    Joining user-chosen parts with ``:`` is ambiguous (user ``a:b`` + id ``c`` = user ``a`` + id
    ``b:c``), so one user's command could be dropped as a duplicate of another's. So the parts are
    joined (``msg:alice:c1``, the form ids had before, which keeps a retry across an upgrade a
    duplicate) only while that reads back one way: no part but the last holds a ``:``. Otherwise
    the id is ``<prefix>:<digest>`` of the length-prefixed parts. The forms never meet: a digest
    holds no ``:``, a join of two or more parts holds at least one. Each prefix is always built
    from the same number of parts.
    """
    if all(":" not in part for part in parts[:-1]):
        return ":".join((prefix, *parts))
    digest = hashlib.sha256(prefix.encode())
    for part in parts:
        raw = part.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(8, "big"))
        digest.update(raw)
    return f"{prefix}:{digest.hexdigest()[:40]}"


def send_command_ids(user_id: str, client_message_id: str | None) -> tuple[str, str]:
    """(command_id, message_id) for a send: deterministic when the client names it."""
    if client_message_id is None:
        message_id = str(uuid.uuid4())
        return f"msg:{message_id}", message_id
    command_id = scoped_id("msg", user_id, client_message_id)
    return command_id, str(uuid.uuid5(_MESSAGE_NS, command_id))


def mark_read_command_id(user_id: str, room_id: str, message_id: str) -> str:
    """One ``chat.mark_read`` command per (reader, room, message)."""
    return scoped_id("read", user_id, room_id, message_id)


def takeover_command_id(operator_id: str, request_id: str) -> str:
    """One ``channel.takeover`` command per (operator, requestId)."""
    return scoped_id("takeover", operator_id, request_id)


class SendChatMessage(Command):
    type: Literal["chat.send_message"] = "chat.send_message"
    command_id: str = Field(min_length=1, max_length=300)
    message_id: str
    user_id: str
    username: str
    room_id: str
    message: str
    client_message_id: str | None = None
    accepted_at_ms: EpochMs


MAX_SEND_BATCH = 1024  # commands in one ``chat.send_batch``; ingress flushes at most SEND_BATCH_MAX (256)


class SendChatBatch(Command):
    """The chat sends an ingress node accepted while its previous flush was in flight, published as
    one AMQP message and applied in one transaction. Each command keeps its own id: the batch's
    ``command_id`` (``batch:<uuid>``) only names the delivery in logs and has no inbox row."""

    type: Literal["chat.send_batch"] = "chat.send_batch"
    command_id: str = Field(min_length=1, max_length=300)
    commands: list[SendChatMessage] = Field(min_length=1, max_length=MAX_SEND_BATCH)


class MarkMessageRead(Command):
    type: Literal["chat.mark_read"] = "chat.mark_read"
    command_id: str
    user_id: str
    room_id: str
    message_id: str


class InboundChannelMessage(Command):
    """A message a contact sent to a tenant's number or account, as a provider webhook told us."""

    type: Literal["channel.inbound"] = "channel.inbound"
    command_id: str  # "<provider>:<provider message id>", so a redelivered webhook is a duplicate
    message_id: str
    provider: Literal["twilio", "meta"]
    channel: str
    address: str  # the tenant's side: number or account id the message was sent to
    contact: str  # the contact's number or Instagram-scoped id
    contact_name: str | None = None
    provider_message_id: str
    text: str
    received_at_ms: EpochMs


class ChannelStatusUpdate(Command):
    """A provider's delivery report for a message we sent."""

    type: Literal["channel.status"] = "channel.status"
    command_id: str  # "status:<provider>:<provider message id>:<status>"
    provider: Literal["twilio", "meta"]
    provider_message_id: str
    status: str
    error_code: str | None = None
    error_message: str | None = None
    reported_at_ms: EpochMs


class OperatorReply(Command):
    """An operator's message in a conversation room: a human handoff to the contact."""

    type: Literal["channel.operator_reply"] = "channel.operator_reply"
    command_id: str
    message_id: str
    tenant_id: str
    conversation_id: str
    operator_id: str
    operator_name: str
    text: str
    client_message_id: str | None = None
    accepted_at_ms: EpochMs


class ConversationTakeover(Command):
    """An operator takes a conversation over from the AI agent (``release``: hands it back)."""

    type: Literal["channel.takeover"] = "channel.takeover"
    command_id: str = Field(min_length=1, max_length=300)
    tenant_id: str
    conversation_id: str
    operator_id: str
    operator_name: str
    release: bool = False
    admin: bool = False  # an admin may hand back a conversation another operator holds
    requested_at_ms: EpochMs


class SendOutbound(Command):
    """Deliver one stored outbound message through its channel's provider."""

    type: Literal["outbound.send"] = "outbound.send"
    command_id: str  # "send:<message id>"
    message_id: str


def inbound_ids(provider: str, provider_message_id: str) -> tuple[str, str]:
    """(command_id, message_id) of an inbound message: the same for every delivery of one webhook."""
    command_id = f"{provider}:{provider_message_id}"
    return command_id, str(uuid.uuid5(_MESSAGE_NS, command_id))


class AgentReply(Command):
    """Answer a triggering message with the AI agent: a chat mention, or a tenant's auto-reply."""

    type: Literal["ai.reply"] = "ai.reply"
    command_id: str  # "ai:<trigger message id>": at most one reply per trigger
    reply_id: str  # the reply's message id, derived from the trigger
    trigger_message_id: str
    room_id: str
    asker: str  # the account charged: user:<id> or tenant:<id>
    asker_user_id: str | None = None  # who mentioned the agent (chat), for creditError
    tenant_id: str | None = None
    conversation_id: str | None = None
    requested_at_ms: EpochMs


class ClassifyMessage(Command):
    """Classify an inbound channel message: intent, confidence, lead temperature, summary."""

    type: Literal["ai.classify"] = "ai.classify"
    command_id: str  # "classify:<message id>"
    tenant_id: str
    conversation_id: str
    message_id: str
    requested_at_ms: EpochMs


def agent_reply_ids(trigger_message_id: str) -> tuple[str, str]:
    """(command_id, reply message id) of the agent's one reply to a message."""
    command_id = f"ai:{trigger_message_id}"
    return command_id, str(uuid.uuid5(_MESSAGE_NS, command_id))
