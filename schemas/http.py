"""HTTP request and response bodies."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

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
    """A user's balance and what they spent."""

    userId: str
    credits: int
    wordsLeft: int
    wordsUsedTotal: int
    creditsChargedTotal: int


def _absent_unless_set(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # the field is left out of the body, never null


class ErrorDetail(BaseModel):
    code: str = Field(description="What went wrong, for programs: bad_request, forbidden, unknown_user, ...")
    message: str = Field(description="What went wrong, for people")
    retryAfterMs: int | SkipJsonSchema[None] = Field(
        default=None,
        description="429 only: when to try again, in milliseconds (the Retry-After header, in seconds)",
        json_schema_extra=_absent_unless_set,
    )


class ErrorResponse(BaseModel):
    """The body of every refusal of the HTTP API (ingress/http/errors.py renders it)."""

    error: ErrorDetail
