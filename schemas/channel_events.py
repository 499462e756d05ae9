"""Socket.IO events for a tenant's operators (live inbox)."""

from __future__ import annotations

from pydantic import Field

from schemas.base import Inbound, Outbound

# --- client -> server ---------------------------------------------------------


class TakeOver(Inbound):
    """``takeOverConversation``: an operator takes a conversation from the AI agent, or hands it back."""

    roomId: str = Field(max_length=256)  # the conversation's room, ``conv:<tenant>:<conversation id>``
    release: bool = False
    requestId: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")


# --- server -> client ---------------------------------------------------------


class MessageStatus(Outbound):
    messageId: str
    roomId: str
    status: str
    errorCode: str | None = None
    errorMessage: str | None = None


class ConversationUpdated(Outbound):
    conversationId: str
    roomId: str
    tenantId: str
    channel: str
    contact: str
    contactName: str | None = None
    lastMessage: str | None = None
    lastMessageAt: int
    intent: str | None = None
    confidence: float | None = None
    lead: str | None = None
    summary: str | None = None
    # Who has taken the conversation over (the agent stays quiet), when the event carries it: a
    # field absent means unchanged, ``takenOverBy: null`` means nobody holds it.
    takenOverBy: str | None = None
    takenOverByName: str | None = None
    takenOverAt: int | None = None
