"""Socket.IO events for a tenant's operators (live inbox)."""

from __future__ import annotations

from schemas.base import Outbound


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
