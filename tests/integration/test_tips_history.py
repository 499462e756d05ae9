"""The credit history's keyset pages against the real PostgreSQL: complete, ordered, stable under writes."""

from __future__ import annotations

import uuid

import pytest

from infra import grants, history
from infra import ledger as ledger_repo
from ingress.http.history_api import BadRequest, decode_cursor, encode_cursor


async def pages(pool, account: str, limit: int) -> list[list[history.Entry]]:
    out, before = [], None
    while True:
        async with pool.acquire() as conn:
            page = await history.entries(conn, account, before, limit)
        if not page:
            return out
        out.append(page)
        before = decode_cursor(encode_cursor(page[-1].position))  # through the wire form


async def test_pages_hold_every_entry_once_newest_first(ledger):
    account = ledger_repo.user_account(f"u-{uuid.uuid4().hex[:8]}")
    for i in range(23):
        await grants.grant(ledger, account, i + 1, "test", f"k{i}", 0)
    got = await pages(ledger, account, 5)
    assert [len(p) for p in got] == [5, 5, 5, 5, 3]
    amounts = [e.amount for p in got for e in p]
    assert amounts == list(range(23, 0, -1))
    assert all(e.kind == "grant" and e.counterparties == (ledger_repo.GRANTS,) for p in got for e in p)


async def test_new_entries_do_not_shift_a_page_already_started(ledger):
    account = ledger_repo.user_account(f"u-{uuid.uuid4().hex[:8]}")
    for i in range(4):
        await grants.grant(ledger, account, i + 1, "test", f"k{i}", 0)
    async with ledger.acquire() as conn:
        first = await history.entries(conn, account, None, 2)
        await grants.grant(ledger, account, 100, "test", "late", 0)  # arrives between two page reads
        second = await history.entries(conn, account, first[-1].position, 2)
    assert [e.amount for e in first + second] == [4, 3, 2, 1]


@pytest.mark.parametrize(
    "cursor", ["", "%%%", "djE6MTI", "djE6MTI6eA", "djI6MToy", "djE6MTIzNDU2Nzg5MDEyMzQ1Njc4OTA6MQ"]
)
def test_a_cursor_not_made_here_is_refused(cursor):
    with pytest.raises(BadRequest):
        decode_cursor(cursor)


def test_a_cursor_round_trips():
    assert decode_cursor(encode_cursor((12, 34))) == (12, 34)
