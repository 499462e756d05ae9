"""Bodies of the admin console's dead-letter actions (``/api/admin/dead-letters/...``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from schemas.base import Storable

MAX_SELECTION = 500

MessageId = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class DeadLetterSelection(Storable):
    """Which dead messages to act on: exactly the ``messageIds`` an admin confirmed, or filters
    (the same as the list's; none at all means every dead message, as ``scripts.dlq`` does)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    messageIds: list[MessageId] | None = Field(default=None, min_length=1, max_length=MAX_SELECTION)
    queue: str | None = Field(default=None, max_length=64)
    actor: str | None = Field(default=None, min_length=1, max_length=128)
    since: str | None = Field(default=None, min_length=1, max_length=64)
    limit: int | None = Field(default=None, ge=1, le=MAX_SELECTION)

    @model_validator(mode="after")
    def _one_way(self) -> DeadLetterSelection:
        if self.messageIds is not None and any(v is not None for v in (self.queue, self.actor, self.since, self.limit)):
            raise ValueError("give either messageIds or filters (queue, actor, since, limit), not both")
        return self


class DeadLetterPurge(Storable):
    """Purge deletes only messages named one by one: what the admin saw and confirmed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    messageIds: list[MessageId] = Field(min_length=1, max_length=MAX_SELECTION)
