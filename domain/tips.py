"""Tips: one user gives whole credits to another, once per (sender, client tip id)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import DomainError


class InvalidTip(DomainError):
    pass


@dataclass(frozen=True, slots=True)
class TipBlocked:
    """The sender cannot pay: nothing moves."""

    required: int
    credits: int


def check_tip(from_user: str, to_user: str, credits: int, max_credits: int) -> None:
    """Reject a tip that can never be valid, whoever holds what."""
    if isinstance(credits, bool) or not isinstance(credits, int) or credits <= 0:
        raise InvalidTip("credits: a tip is a positive whole number of credits")
    if credits > max_credits:
        raise InvalidTip(f"credits: a tip is at most {max_credits} credits")
    if from_user == to_user:
        raise InvalidTip("toUserId: you cannot tip yourself")


def afford_tip(balance_credits: int, credits: int) -> TipBlocked | None:
    """None when the sender's whole credits cover the tip (words already opened are not refunded)."""
    return None if balance_credits >= credits else TipBlocked(required=credits, credits=balance_credits)
