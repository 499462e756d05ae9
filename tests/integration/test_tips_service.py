"""Tips against the real PostgreSQL: one transfer per (sender, clientTipId), whatever is repeated."""

from __future__ import annotations

import asyncio
import time
import uuid

from infra import grants
from infra import ledger as ledger_repo
from schemas.tips import SendTipCommand, tip_ids
from workers import billing_service, tips_service

MAX = 1000


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tip(sender: str, to: str, credits: int, client_id: str | None = None, room: str | None = None) -> SendTipCommand:
    command_id, tip_id = tip_ids(sender, client_id or uid("t"))
    return SendTipCommand(
        command_id=command_id,
        tip_id=tip_id,
        user_id=sender,
        username=sender.upper(),
        to_user_id=to,
        credits=credits,
        room_id=room,
        client_tip_id=command_id.rsplit(":", 1)[1],
        accepted_at_ms=int(time.time() * 1000),
    )


async def apply(pool, cmd):
    return await tips_service.send_tip(pool, cmd, MAX, 0, "/billing")


async def credits(pool, user: str) -> int:
    return await pool.fetchval("SELECT credits FROM accounts WHERE account_id = $1", f"user:{user}")


async def funded(pool, *amounts: int) -> list[str]:
    users = [uid("u") for _ in amounts]
    for user, amount in zip(users, amounts, strict=True):
        await grants.grant(pool, ledger_repo.user_account(user), amount, "test", "seed", 0)
    return users


async def test_a_tip_moves_credits_once_however_often_it_is_applied(ledger):
    alice, bob = await funded(ledger, 10, 1)
    cmd = tip(alice, bob, 4, "same")
    outcomes = [await apply(ledger, cmd) for _ in range(4)]
    assert [o.fresh for o in outcomes] == [True, False, False, False]
    assert all(o.emits == outcomes[0].emits for o in outcomes)  # duplicates re-publish the stored effects
    assert (await credits(ledger, alice), await credits(ledger, bob)) == (6, 5)
    rows = await ledger.fetch(
        "SELECT p.account_id, p.amount FROM ledger_transactions t JOIN ledger_postings p USING (txn_id)"
        " WHERE t.kind = 'tip' AND t.reference = $1 ORDER BY p.amount",
        cmd.command_id,
    )
    assert [(r["account_id"], r["amount"]) for r in rows] == [(f"user:{alice}", -4), (f"user:{bob}", 4)]
    events = {e["event"]: e for e in outcomes[0].emits}
    assert set(events) == {"tipReceived", "tipSent"}
    assert events["tipReceived"]["room"] == f"u/{bob}"
    assert events["tipReceived"]["data"]["fromUserId"] == alice and events["tipReceived"]["data"]["balance"] == 5
    assert events["tipSent"]["room"] == f"u/{alice}" and events["tipSent"]["data"]["balance"] == 6


async def test_a_tip_in_a_room_is_stored_in_its_history(ledger):
    alice, bob = await funded(ledger, 3, 1)
    room = uid("room")
    cmd = tip(alice, bob, 2, room=room)
    outcome = await apply(ledger, cmd)
    message = next(e for e in outcome.emits if e["event"] == "newMessage")
    assert message["room"] == f"r/{room}"
    assert message["data"]["kind"] == "tip" and message["data"]["messageId"] == cmd.tip_id
    assert message["data"]["tip"] == {"toUserId": bob, "credits": 2}
    stored = await ledger.fetchrow(
        "SELECT room_id, words, payload FROM messages WHERE message_id = $1", uuid.UUID(cmd.tip_id)
    )
    assert stored["room_id"] == room and stored["words"] == 0 and stored["payload"] == message["data"]
    await apply(ledger, cmd)
    assert await ledger.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room) == 1


async def test_insufficient_credit_gets_credit_error_and_moves_nothing(ledger):
    alice, bob = await funded(ledger, 2, 1)
    room = uid("room")
    cmd = tip(alice, bob, 3, room=room)
    outcome = await apply(ledger, cmd)
    assert outcome.status == "rejected"
    [error] = outcome.emits
    assert error["event"] == "creditError" and error["room"] == f"u/{alice}"
    assert error["data"]["code"] == "insufficient_credits" and error["data"]["kind"] == "tip"
    assert (error["data"]["required"], error["data"]["credits"]) == (3, 2)
    assert (await credits(ledger, alice), await credits(ledger, bob)) == (2, 1)
    assert await ledger.fetchval("SELECT count(*) FROM ledger_transactions WHERE reference = $1", cmd.command_id) == 0
    assert await ledger.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room) == 0


async def test_an_unknown_recipient_is_refused_and_nothing_moves(ledger):
    [alice] = await funded(ledger, 5)
    outcome = await apply(ledger, tip(alice, uid("nobody"), 1))
    assert outcome.status == "rejected"
    assert outcome.emits[0]["event"] == "error" and outcome.emits[0]["data"]["code"] == "unknown_user"
    assert await credits(ledger, alice) == 5


async def test_a_reused_client_tip_id_with_other_terms_is_refused(ledger):
    alice, bob, carol = await funded(ledger, 10, 1, 1)
    await apply(ledger, tip(alice, bob, 2, "reused"))
    outcome = await apply(ledger, tip(alice, carol, 5, "reused"))
    assert not outcome.fresh and outcome.status == "rejected"
    assert outcome.emits[0]["data"]["code"] == "duplicate_tip_id"
    assert [await credits(ledger, u) for u in (alice, bob, carol)] == [8, 3, 1]


async def test_a_self_tip_or_an_oversized_tip_is_refused(ledger):
    alice, bob = await funded(ledger, 5000, 1)
    for cmd in (tip(alice, alice, 1), tip(alice, bob, MAX + 1)):
        outcome = await apply(ledger, cmd)
        assert outcome.status == "rejected" and outcome.emits[0]["data"]["code"] == "bad_request"
    assert await credits(ledger, alice) == 5000


async def test_a_sender_owing_a_refund_shortfall_settles_first_and_cannot_tip(ledger):
    alice, bob = uid("u"), uid("u")
    await grants.grant(ledger, ledger_repo.user_account(bob), 1, "test", "seed", 0)
    paid = billing_service.Payment("stripe", uid("cs"), uid("pi"), alice, "small", 10, 500, "usd")
    async with ledger.acquire() as conn, conn.transaction():
        await billing_service.record_payment(conn, paid)
    await apply(ledger, tip(alice, bob, 8))  # spent before the refund
    async with ledger.acquire() as conn, conn.transaction():  # a full refund: 2 taken back, 8 owed
        await billing_service.record_refund(conn, billing_service.Refund("stripe", paid.payment_ref, 500, 500))
    await grants.grant(ledger, ledger_repo.user_account(alice), 3, "test", "later", 0)

    outcome = await apply(ledger, tip(alice, bob, 1))
    assert outcome.status == "rejected"
    [error] = outcome.emits
    assert error["event"] == "creditError" and error["data"]["code"] == "spending_blocked"
    assert error["data"]["owed"] == 5 and error["data"]["credits"] == 0  # the 3 new credits settled part of it
    assert (await credits(ledger, alice), await credits(ledger, bob)) == (0, 9)


async def test_concurrent_crossing_tips_neither_deadlock_nor_overspend(ledger):
    alice, bob = await funded(ledger, 20, 20)
    cmds = [tip(alice, bob, 1) for _ in range(25)] + [tip(bob, alice, 1) for _ in range(25)]
    outcomes = await asyncio.gather(*(apply(ledger, c) for c in cmds))
    moved = {
        u: sum(1 for c, o in zip(cmds, outcomes, strict=True) if c.user_id == u and o.status == "applied")
        for u in (alice, bob)
    }
    assert await credits(ledger, alice) == 20 - moved[alice] + moved[bob]
    assert await credits(ledger, bob) == 20 - moved[bob] + moved[alice]
    assert moved[alice] >= 20 and moved[bob] >= 20  # each could always pay at least its first 20
