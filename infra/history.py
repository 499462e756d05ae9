"""A user's ledger entries, newest first, read with keyset pagination.

One entry is one posting on the account: its amount is signed from the
account's point of view, and the counterparty is the transaction's other side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from infra.db import Conn

Position = tuple[int, int]  # (txn_id, posting_id) of the last entry a page showed


@dataclass(frozen=True, slots=True)
class Entry:
    position: Position
    kind: str
    amount: int
    counterparties: tuple[str, ...]
    reference: str
    memo: str | None
    created_at: datetime


async def account_exists(conn: Conn, account: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM accounts WHERE account_id = $1", account))


async def entries(conn: Conn, account: str, before: Position | None, limit: int) -> list[Entry]:
    """Up to ``limit`` entries older than ``before`` (all, from the newest, when it is None)."""
    rows = await conn.fetch(
        "SELECT p.txn_id, p.posting_id, p.amount, t.kind, t.reference, t.memo, t.created_at,"
        " ARRAY(SELECT o.account_id FROM ledger_postings o WHERE o.txn_id = p.txn_id"
        "       AND o.account_id <> p.account_id ORDER BY o.posting_id) AS others"
        " FROM ledger_postings p JOIN ledger_transactions t ON t.txn_id = p.txn_id"
        " WHERE p.account_id = $1 AND ($2::bigint IS NULL OR (p.txn_id, p.posting_id) < ($2::bigint, $3::bigint))"
        " ORDER BY p.txn_id DESC, p.posting_id DESC LIMIT $4",
        account,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [
        Entry(
            position=(r["txn_id"], r["posting_id"]),
            kind=r["kind"],
            amount=r["amount"],
            counterparties=tuple(r["others"]),
            reference=r["reference"],
            memo=r["memo"],
            created_at=r["created_at"],
        )
        for r in rows
    ]
