"""Socket.IO events: what clients send and what they receive (protocol of seed 000)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from domain.rooms import RoomType
from domain.spending import QuotaKind
from schemas.base import Inbound, Outbound

MAX_MESSAGE_CHARS = 4000
RoomId = str  # validated by domain.rooms; kept as str so the error names the rule

# --- client -> server ---------------------------------------------------------


MAX_SEQ = 2**63 - 1  # room_seq is a bigint


class JoinRoom(Inbound):
    roomId: RoomId
    roomType: RoomType | None = Field(default=None, strict=False)  # enum from its string value
    # The last seq this client has of the room: roomJoined's history is then every message after it
    # (the first page; ``hasMore`` says to fetch the rest from GET /api/rooms/{roomId}/messages).
    sinceSeq: int | None = Field(default=None, ge=0, le=MAX_SEQ)


class RoomRef(Inbound):
    roomId: RoomId


class SendMessage(Inbound):
    roomId: RoomId
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    clientMessageId: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("message", "clientMessageId")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class MarkRead(Inbound):
    roomId: RoomId
    messageId: str = Field(min_length=1, max_length=64)


# --- server -> client ---------------------------------------------------------


class ErrorBody(Outbound):
    code: str
    message: str


class Ack(Outbound):
    status: Literal["accepted", "rejected"]
    messageId: str | None = None
    error: ErrorBody | None = None
    retryAfterMs: int | None = None


class CreditInfo(Outbound):
    charged: int
    wordsLeft: int


class NewMessage(Outbound):
    messageId: str
    id: str = ""  # alias of messageId kept for the original server's clients; _legacy_aliases fills it in
    roomId: str
    userId: str
    username: str
    message: str
    content: str = ""  # alias of message kept for the original server's clients; _legacy_aliases fills it in
    words: int
    timestamp: int  # epoch milliseconds
    kind: Literal["user", "inbound", "outbound", "ai", "tip"] = "user"
    clientMessageId: str | None = None
    creditInfo: CreditInfo | None = None
    replyTo: str | None = None  # the message an AI reply answers
    seq: int | None = None  # its place in the room (1, 2, ...), set when it is stored

    @model_validator(mode="before")
    @classmethod
    def _legacy_aliases(cls, data: Any) -> Any:
        """``id`` and ``content`` repeat ``messageId`` and ``message`` unless given."""
        if isinstance(data, dict):
            data = {"id": data.get("messageId"), "content": data.get("message"), **data}
        return data


class CreditError(Outbound):
    code: Literal["insufficient_credits"] = "insufficient_credits"
    message: str
    clientMessageId: str | None
    messageId: str
    roomId: str
    required: int
    credits: int
    wordsLeft: int
    rechargeUrl: str


class QuotaExceeded(Outbound):
    """A plan's daily quota blocked a message or an AI call; nothing was charged.

    ``resetsAt`` is the next 00:00 UTC (ISO 8601): quotas count per UTC day.
    """

    code: Literal["quota_exceeded"] = "quota_exceeded"
    kind: QuotaKind
    limit: int
    used: int
    plan: str
    resetsAt: str
    message: str
    messageId: str | None = None
    clientMessageId: str | None = None
    roomId: str | None = None


class PlanUpdated(Outbound):
    """A Stripe subscription or invoice event changed the user's plan, status or credits."""

    plan: str  # the plan whose quotas apply now
    subscribedPlan: str
    status: str
    creditsGranted: int = 0  # a paid invoice's monthly allowance
    credits: int  # the balance after this event


class CreditWarning(Outbound):
    message: str
    credits: int
    wordsLeft: int
    wordsRemaining: int


class CommandFailed(Outbound):
    """Sent as ``error`` when a command accepted by ingress could not be applied (fail closed)."""

    code: str
    message: str
    messageId: str | None = None
    clientMessageId: str | None = None
    roomId: str | None = None


class MessageRead(Outbound):
    roomId: str
    messageId: str
    userId: str
