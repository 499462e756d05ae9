"""Credit-pack purchases, their refunds, and refunds that arrived before their purchase.

A purchase row is written once per ``purchase_ref`` (the Stripe Checkout Session id or
``lemonsqueezy:<order>``); what its refunds took back so far is kept on it. Every event of one
payment is serialized by :func:`lock_payment`, whatever order the provider sends them in.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.db import Conn


@dataclass(frozen=True, slots=True)
class Payment:
    """A paid credit pack, as a provider's event reports it."""

    provider: str
    purchase_ref: str
    payment_ref: str
    user_id: str
    pack: str
    credits: int
    amount: int  # paid, in minor units
    currency: str


@dataclass(frozen=True, slots=True)
class Purchase:
    purchase_ref: str
    provider: str
    payment_ref: str
    user_id: str
    pack: str
    credits: int
    amount: int  # paid, in minor units
    currency: str
    amount_refunded: int
    credits_reversed: int


@dataclass(frozen=True, slots=True)
class EarlyRefund:
    """A refund kept until its purchase lands: the largest refunded total seen, and what was paid."""

    amount_refunded: int
    amount: int


async def lock_payment(conn: Conn, payment_ref: str) -> None:
    """Serialize every event of one payment (its purchase and its refunds) until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 42))", f"payment:{payment_ref}")


async def record(conn: Conn, p: Payment) -> bool:
    """Store a paid purchase; False if it was stored before (another event of the same purchase)."""
    return bool(
        await conn.fetchval(
            "INSERT INTO purchases (purchase_ref, provider, payment_ref, user_id, pack, credits, amount, currency)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (purchase_ref) DO NOTHING RETURNING true",
            p.purchase_ref,
            p.provider,
            p.payment_ref,
            p.user_id,
            p.pack,
            p.credits,
            p.amount,
            p.currency,
        )
    )


async def known(conn: Conn, payment_ref: str) -> bool:
    """Whether the purchase of ``payment_ref`` has landed."""
    return bool(await conn.fetchval("SELECT true FROM purchases WHERE payment_ref = $1", payment_ref))


async def lock(conn: Conn, payment_ref: str) -> Purchase:
    """The purchase of ``payment_ref`` (which has landed), locked until the transaction ends."""
    row = await conn.fetchrow(
        "SELECT purchase_ref, provider, payment_ref, user_id, pack, credits, amount, currency, amount_refunded,"
        " credits_reversed FROM purchases WHERE payment_ref = $1 FOR UPDATE",
        payment_ref,
    )
    assert row is not None, f"no purchase {payment_ref}"
    return Purchase(**dict(row))


async def record_reversal(conn: Conn, payment_ref: str, amount_refunded: int, credits_reversed: int) -> None:
    """Remember the largest refunded total and credits reversed so far (an older total changes nothing)."""
    await conn.execute(
        "UPDATE purchases SET amount_refunded = greatest(amount_refunded, $2),"
        " credits_reversed = greatest(credits_reversed, $3), updated_at = now() WHERE payment_ref = $1",
        payment_ref,
        amount_refunded,
        credits_reversed,
    )


async def keep_early_refund(conn: Conn, payment_ref: str, provider: str, amount_refunded: int, amount: int) -> None:
    """Keep a refund whose purchase has not landed yet, with the largest refunded total seen."""
    await conn.execute(
        "INSERT INTO early_refunds (payment_ref, provider, amount_refunded, amount) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (payment_ref) DO UPDATE SET amount_refunded ="
        " greatest(early_refunds.amount_refunded, EXCLUDED.amount_refunded)",
        payment_ref,
        provider,
        amount_refunded,
        amount,
    )


async def take_early_refund(conn: Conn, payment_ref: str) -> EarlyRefund | None:
    """Remove and return the refund kept for ``payment_ref``, if one came before its purchase."""
    row = await conn.fetchrow(
        "DELETE FROM early_refunds WHERE payment_ref = $1 RETURNING amount_refunded, amount", payment_ref
    )
    return None if row is None else EarlyRefund(row["amount_refunded"], row["amount"])
