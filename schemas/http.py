"""HTTP request and response bodies."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Storable


class _Body(Storable):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class GrantCredits(_Body):
    credits: int = Field(gt=0, le=1_000_000_000)
    reason: str = Field(min_length=1, max_length=200)
    idempotencyKey: str = Field(min_length=1, max_length=200)


class ResetCredits(_Body):
    credits: int = Field(ge=0, le=1_000_000_000)
    reason: str = Field(default="reset", max_length=200)


class CreditStats(BaseModel):
    userId: str
    credits: int
    wordsLeft: int
    wordsUsedTotal: int
    creditsChargedTotal: int
