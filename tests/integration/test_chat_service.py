"""The chat use case against the real PostgreSQL: charging, blocking, idempotency, concurrency."""

from __future__ import annotations

import asyncio
import time
import uuid

from domain.credits import CreditPolicy
from infra import grants
from infra import ledger as ledger_repo
from schemas.commands import SendChatMessage, send_command_ids
from workers import chat_service

POLICY = CreditPolicy(1000, 50, 86_400)


def command(user: str, text: str, room: str = "room-1", client_id: str | None = None) -> SendChatMessage:
    command_id, message_id = send_command_ids(user, client_id)
    return SendChatMessage(
        command_id=command_id,
        message_id=message_id,
        user_id=user,
        username=user,
        room_id=room,
        message=text,
        client_message_id=client_id,
        accepted_at_ms=int(time.time() * 1000),
    )


async def apply(pool, cmd):
    return await chat_service.send_message(pool, cmd, POLICY, 0, "/billing")


async def balance(pool, user):
    return await pool.fetchrow(
        "SELECT credits, words_left, credits_charged_total, words_used_total FROM accounts WHERE account_id = $1",
        f"user:{user}",
    )


async def test_seed_example_charges_two_of_five_credits(ledger):
    user = f"u-{uuid.uuid4().hex[:8]}"
    await grants.grant(ledger, ledger_repo.user_account(user), 5, "test", "k", 0)
    await apply(ledger, command(user, "palabra " * 700))
    await apply(ledger, command(user, "palabra " * 500))
    row = await balance(ledger, user)
    assert (row["credits"], row["words_left"], row["credits_charged_total"]) == (3, 800, 2)


async def test_same_command_five_times_charges_once(ledger):
    user = f"u-{uuid.uuid4().hex[:8]}"
    await grants.grant(ledger, ledger_repo.user_account(user), 3, "test", "k", 0)
    cmd = command(user, "uno dos tres " * 400, client_id="c-1")  # 1200 words: 2 credits
    outcomes = [await apply(ledger, cmd) for _ in range(5)]
    assert [o.fresh for o in outcomes] == [True, False, False, False, False]
    assert all(o.emits == outcomes[0].emits for o in outcomes)  # the stored result is re-published
    row = await balance(ledger, user)
    assert (row["credits"], row["credits_charged_total"]) == (1, 2)
    assert await ledger.fetchval("SELECT count(*) FROM messages WHERE message_id = $1", uuid.UUID(cmd.message_id)) == 1


async def test_blocked_message_charges_nothing_and_stores_nothing(ledger):
    user = f"u-{uuid.uuid4().hex[:8]}"
    await grants.grant(ledger, ledger_repo.user_account(user), 1, "test", "k", 0)
    cmd = command(user, "w " * 1100)  # needs 2 credits; uncovered 100 > grace
    outcome = await apply(ledger, cmd)
    assert outcome.status == "rejected"
    (event,) = outcome.emits
    assert event["event"] == "creditError" and event["room"] == f"u/{user}"
    assert event["data"]["required"] == 2 and event["data"]["credits"] == 1
    assert (await balance(ledger, user))["credits"] == 1
    assert await ledger.fetchval("SELECT count(*) FROM messages WHERE message_id = $1", uuid.UUID(cmd.message_id)) == 0


async def test_fifty_concurrent_sends_charge_exactly_what_is_affordable(ledger):
    user = f"u-{uuid.uuid4().hex[:8]}"
    await grants.grant(ledger, ledger_repo.user_account(user), 10, "test", "k", 0)
    cmds = [command(user, "w " * 1000) for _ in range(50)]  # one credit each, never within grace
    outcomes = await asyncio.gather(*(apply(ledger, c) for c in cmds))
    assert sum(o.status == "applied" for o in outcomes) == 10
    assert sum(o.status == "rejected" for o in outcomes) == 40
    row = await balance(ledger, user)
    assert (row["credits"], row["credits_charged_total"], row["words_used_total"]) == (0, 10, 10_000)


async def test_grants_are_idempotent_per_key(ledger):
    user = f"u-{uuid.uuid4().hex[:8]}"
    first = await grants.grant(ledger, ledger_repo.user_account(user), 7, "promo", "grant-1", 0)
    again = await grants.grant(ledger, ledger_repo.user_account(user), 7, "promo", "grant-1", 0)
    other = await grants.grant(ledger, ledger_repo.user_account(user), 1, "promo", "grant-2", 0)
    assert (first.applied, again.applied, other.applied) == (True, False, True)
    assert other.credits == 8


async def test_reset_sets_the_balance_through_the_ledger(ledger):
    user = f"u-{uuid.uuid4().hex[:8]}"
    await grants.grant(ledger, ledger_repo.user_account(user), 9, "t", "k", 0)
    assert (await grants.reset(ledger, user, 4, "support", f"reset:{uuid.uuid4()}")).credits == 4
    assert (await grants.reset(ledger, user, 6, "support", f"reset:{uuid.uuid4()}")).credits == 6
    kinds = await ledger.fetch(
        "SELECT t.kind, p.amount FROM ledger_postings p JOIN ledger_transactions t USING (txn_id)"
        " WHERE p.account_id = $1 ORDER BY p.posting_id",
        f"user:{user}",
    )
    assert [(r["kind"], r["amount"]) for r in kinds] == [("grant", 9), ("adjustment", -5), ("adjustment", 2)]


async def test_the_balance_check_constraint_is_the_last_line_of_defence(ledger):
    import asyncpg
    import pytest

    user = f"u-{uuid.uuid4().hex[:8]}"
    await grants.grant(ledger, ledger_repo.user_account(user), 1, "t", "k", 0)
    with pytest.raises(asyncpg.CheckViolationError):
        async with ledger.acquire() as conn, conn.transaction():
            await ledger_repo.transfer(conn, f"user:{user}", ledger_repo.REVENUE, 2, "charge", "overdraw")
    assert (await balance(ledger, user))["credits"] == 1


async def test_signup_credits_are_granted_once(ledger):
    user = f"u-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        await chat_service.send_message(ledger, command(user, "hola"), POLICY, 5, "/billing")
    row = await balance(ledger, user)
    assert row["credits"] + row["credits_charged_total"] == 5


async def test_mark_read_stores_the_mark_for_known_messages_only(ledger):
    from schemas.commands import MarkMessageRead

    user = f"u-{uuid.uuid4().hex[:8]}"
    sent = command(user, "hola", room="r-read")
    await apply(ledger, sent)
    ok = await chat_service.mark_read(
        ledger, MarkMessageRead(command_id=f"read:{user}:1", user_id=user, room_id="r-read", message_id=sent.message_id)
    )
    unknown = await chat_service.mark_read(
        ledger,
        MarkMessageRead(command_id=f"read:{user}:2", user_id=user, room_id="r-read", message_id=str(uuid.uuid4())),
    )
    assert ok.status == "applied" and ok.emits[0]["event"] == "messageRead"
    assert unknown.status == "rejected" and unknown.emits[0]["event"] == "error"
    assert await ledger.fetchval("SELECT message_id::text FROM read_marks WHERE user_id = $1", user) == sent.message_id
