"""The AI agent's wire contract: structured classification output and socket events."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Outbound


class Classification(BaseModel):
    """What the model must return for an inbound channel message (JSON-schema structured output)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intent: str = Field(min_length=1, max_length=64, description="short snake_case intent, e.g. pricing_question")
    confidence: float = Field(ge=0, le=1)
    lead: Literal["hot", "warm", "cold"]
    summary: str = Field(max_length=500)


class MessageDelta(Outbound):
    messageId: str
    roomId: str
    replyTo: str
    delta: str


class AgentError(Outbound):
    replyTo: str
    roomId: str
    code: str  # not_configured | insufficient_credits | rate_limited | unavailable | timeout | bad_response
    message: str
