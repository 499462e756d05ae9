"""The credit history page: ``GET /api/credits/history/{userId}``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Counterparty(BaseModel):
    account: str  # e.g. user:bob, tenant:acme, system:revenue
    type: str  # user, tenant or system
    id: str  # bob, acme, revenue


class HistoryEntry(BaseModel):
    transactionId: int
    kind: str  # grant, signup, adjustment, charge, tip, purchase, deposit, call, ...
    amount: int  # signed, from the user's point of view: + received, - spent or sent
    direction: Literal["in", "out"]
    counterparty: Counterparty | None
    reference: str
    memo: str | None
    createdAt: str  # ISO 8601, UTC


class HistoryPage(BaseModel):
    """A page of a user's ledger entries, newest first."""

    userId: str
    entries: list[HistoryEntry]
    nextCursor: str | None  # pass back as ?cursor= for the next (older) page; None on the last page
