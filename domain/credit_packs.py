"""Credit packs for sale, and how much of a pack a (partial) refund takes back."""

from __future__ import annotations

import re
from dataclasses import dataclass

PACK_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CURRENCY = re.compile(r"^[a-z]{3}$")


class InvalidPackSpec(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CreditPack:
    pack_id: str
    credits: int
    amount: int  # price in the currency's minor unit (cents)
    currency: str  # ISO 4217, lower case as Stripe spells it


@dataclass(frozen=True, slots=True)
class CreditPacks:
    packs: tuple[CreditPack, ...]
    variants: dict[str, str]  # LemonSqueezy variant id -> pack id

    def get(self, pack_id: str) -> CreditPack | None:
        return next((p for p in self.packs if p.pack_id == pack_id), None)

    def for_variant(self, variant_id: str) -> CreditPack | None:
        pack_id = self.variants.get(variant_id)
        return self.get(pack_id) if pack_id else None


def parse_credit_packs(packs: str, variants: str = "") -> CreditPacks:
    """Parse ``"id:credits:amount:currency,…"`` and ``"variant:pack_id,…"``."""
    parsed: list[CreditPack] = []
    for item in (p.strip() for p in packs.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 4:
            raise InvalidPackSpec(f"credit pack {item!r}: expected id:credits:amount:currency")
        pack_id, credits, amount, currency = (p.strip() for p in parts)
        if not PACK_ID.match(pack_id) or not CURRENCY.match(currency.lower()):
            raise InvalidPackSpec(f"credit pack {item!r}: bad id or currency")
        if not credits.isdigit() or not amount.isdigit() or int(credits) < 1 or int(amount) < 1:
            raise InvalidPackSpec(f"credit pack {item!r}: credits and amount must be positive integers")
        if any(p.pack_id == pack_id for p in parsed):
            raise InvalidPackSpec(f"credit pack {pack_id!r} is defined twice")
        parsed.append(CreditPack(pack_id, int(credits), int(amount), currency.lower()))
    result = CreditPacks(tuple(parsed), {})
    for item in (v.strip() for v in variants.split(",")):
        if not item:
            continue
        variant_id, _, pack_id = (p.strip() for p in item.partition(":"))
        if not variant_id or result.get(pack_id) is None:
            raise InvalidPackSpec(f"LemonSqueezy variant {item!r}: expected variant_id:<a pack id>")
        result.variants[variant_id] = pack_id
    return result


def credits_to_reverse(credits: int, amount_paid: int, amount_refunded: int) -> int:
    """The credits a refund of ``amount_refunded`` (cumulative) takes back from a pack of ``credits``.

    Proportional, rounded up: refunding any part of the price takes back at least the credits it
    paid for. A full refund (or an unknown price) takes back the whole pack.
    """
    if amount_refunded <= 0:
        return 0
    if amount_paid <= 0 or amount_refunded >= amount_paid:
        return credits
    return min(credits, -(-credits * amount_refunded // amount_paid))


def split_reversal(owed: int, balance: int) -> tuple[int, int]:
    """(taken from the balance now, shortfall left as a receivable)."""
    taken = max(0, min(owed, balance))
    return taken, owed - taken
