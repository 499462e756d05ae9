"""Credit-pack purchases on the wire: the HTTP API and the socket events a buyer receives."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from schemas.base import Outbound, Storable


class CheckoutRequest(Storable):
    model_config = ConfigDict(extra="forbid", strict=True)

    pack: str = Field(min_length=1, max_length=64)


class CreditsPurchased(Outbound):
    """To ``u/<user>`` once a purchase's credits landed."""

    provider: str
    purchaseRef: str
    pack: str
    credits: int
    balance: int


class CreditsRefunded(Outbound):
    """To ``u/<user>`` when a refund took credits back; ``owed`` is what is still a receivable."""

    provider: str
    purchaseRef: str
    creditsReversed: int
    taken: int
    owed: int
    balance: int
