"""Ledger invariants that must hold after every test that touched money."""

from __future__ import annotations

import asyncpg


async def assert_ledger_invariants(conn: asyncpg.Connection) -> None:
    total = await conn.fetchval("SELECT coalesce(sum(amount), 0) FROM ledger_postings")
    assert total == 0, f"postings sum to {total}, not 0"

    unbalanced = await conn.fetch(
        "SELECT txn_id, sum(amount) AS s, count(*) AS n FROM ledger_postings GROUP BY txn_id"
        " HAVING sum(amount) <> 0 OR count(*) < 2"
    )
    assert not unbalanced, f"transactions that do not balance: {[dict(r) for r in unbalanced]}"

    negative = await conn.fetch("SELECT account_id, credits FROM accounts WHERE kind <> 'system' AND credits < 0")
    assert not negative, f"negative balances: {[dict(r) for r in negative]}"

    drift = await conn.fetch(
        "SELECT a.account_id, a.credits, coalesce(sum(p.amount), 0) AS posted FROM accounts a"
        " LEFT JOIN ledger_postings p ON p.account_id = a.account_id WHERE a.kind <> 'system'"
        " GROUP BY a.account_id, a.credits HAVING a.credits <> coalesce(sum(p.amount), 0)"
    )
    assert not drift, f"balances that differ from their postings: {[dict(r) for r in drift]}"

    charged = await conn.fetch(
        "SELECT a.account_id, a.credits_charged_total, coalesce(-sum(p.amount), 0) AS posted"
        " FROM accounts a LEFT JOIN ledger_postings p ON p.account_id = a.account_id"
        " AND p.txn_id IN (SELECT txn_id FROM ledger_transactions WHERE kind = 'charge')"
        " WHERE a.kind <> 'system' GROUP BY a.account_id, a.credits_charged_total"
        " HAVING a.credits_charged_total <> coalesce(-sum(p.amount), 0)"
    )
    assert not charged, f"charge counters that differ from charge postings: {[dict(r) for r in charged]}"

    # Every charge belongs to exactly one applied command, and no command was charged twice.
    orphan = await conn.fetch(
        "SELECT t.reference FROM ledger_transactions t LEFT JOIN inbox i ON i.command_id = t.reference"
        " WHERE t.kind = 'charge' AND (i.command_id IS NULL OR i.status <> 'applied')"
    )
    assert not orphan, f"charges without an applied command: {[r['reference'] for r in orphan]}"
    twice = await conn.fetch(
        "SELECT reference, count(*) FROM ledger_transactions GROUP BY kind, reference HAVING count(*) > 1"
    )
    assert not twice, f"movements applied twice: {[dict(r) for r in twice]}"

    unowned = await conn.fetchval(
        "SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM inbox i"
        " WHERE i.status = 'applied' AND i.result->>'message_id' = m.message_id::text)"
    )
    assert unowned == 0, f"{unowned} stored messages without exactly one applied command"
