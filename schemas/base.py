from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, model_validator

from schemas.storable import check_storable


class Storable(BaseModel):
    """Refuses input with text PostgreSQL cannot store (NUL, lone surrogates) anywhere in it."""

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        return check_storable(data)


class Inbound(Storable):
    """A payload from a client: unknown fields (such as a spoofed userId) are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


class Outbound(BaseModel):
    """A payload we emit; serialized with by_alias so aliases reach the wire."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)


class Command(BaseModel):
    """A command on a queue: versioned, frozen, strict about its fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    if TYPE_CHECKING:
        # Every command declares its ``command_id`` (the idempotency key), each with its own limits and
        # in its own place among its fields (the order they are serialized in), so the base only types it.
        command_id: str
