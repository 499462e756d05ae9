"""Chat batches (workers/chat_batch.py) against the real PostgreSQL: one transaction for many
messages, each charged exactly once, in order; duplicates replayed; a poison command alone fails."""

from __future__ import annotations

import asyncio
import time
import uuid

from domain.credits import CreditPolicy
from infra import grants
from infra import ledger as ledger_repo
from schemas.commands import SendChatMessage, send_command_ids
from workers import chat_batch
from workers.chat_service import ChatTerms

TERMS = ChatTerms(CreditPolicy(1000, 50, 86_400), 0, "/billing")


def user() -> str:
    return f"b-{uuid.uuid4().hex[:8]}"


def command(sender: str, text: str, client_id: str | None = None, message_id: str | None = None) -> SendChatMessage:
    command_id, mid = send_command_ids(sender, client_id)
    return SendChatMessage(
        command_id=command_id,
        message_id=message_id or mid,
        user_id=sender,
        username=sender,
        room_id="room-batch",
        message=text,
        client_message_id=client_id,
        accepted_at_ms=int(time.time() * 1000),
    )


async def credits(pool, who: str) -> int:
    return await pool.fetchval("SELECT credits FROM accounts WHERE account_id = $1", ledger_repo.user_account(who))


async def stored(pool, cmds) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM messages WHERE message_id = ANY($1::uuid[])", [c.message_id for c in cmds]
    )


async def logged(pool, cmds) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT command_id, status FROM event_log WHERE command_id = ANY($1::text[])", [c.command_id for c in cmds]
    )
    return {r["command_id"]: r["status"] for r in rows}


async def test_a_batch_of_one(ledger):
    alice = user()
    await grants.grant(ledger, ledger_repo.user_account(alice), 2, "test", "k", 0)
    cmd = command(alice, "hola " * 1200)
    result = await chat_batch.apply_batch(ledger, [cmd], TERMS)
    ((applied, outcome),) = result.applied
    assert applied == cmd and outcome.fresh and outcome.status == "applied" and not result.poisoned
    assert await credits(ledger, alice) == 0 and await stored(ledger, [cmd]) == 1
    assert await logged(ledger, [cmd]) == {cmd.command_id: "applied"}


async def test_a_batch_of_256_from_many_users_commits_every_message_once(ledger):
    senders = [user() for _ in range(64)]
    for s in senders:
        await grants.grant(ledger, ledger_repo.user_account(s), 4, "test", "k", 0)
    cmds = [command(senders[i % 64], "palabra " * 1000) for i in range(256)]  # one credit each
    result = await chat_batch.apply_batch(ledger, cmds, TERMS)
    assert [c for c, _ in result.applied] == cmds
    assert all(o.fresh and o.status == "applied" for _, o in result.applied)
    assert [await credits(ledger, s) for s in senders] == [0] * 64
    assert await stored(ledger, cmds) == 256
    assert set((await logged(ledger, cmds)).values()) == {"applied"} and len(await logged(ledger, cmds)) == 256


async def test_duplicates_inside_a_batch_and_commands_applied_before_replay_their_results(ledger):
    alice = user()
    await grants.grant(ledger, ledger_repo.user_account(alice), 5, "test", "k", 0)
    earlier = command(alice, "uno " * 1000, client_id="c-earlier")
    await chat_batch.apply_batch(ledger, [earlier], TERMS)
    twice = command(alice, "dos " * 1000, client_id="c-twice")
    other = command(alice, "tres " * 1000)
    result = await chat_batch.apply_batch(ledger, [twice, earlier, twice, other], TERMS)
    fresh = [o.fresh for _, o in result.applied]
    assert fresh == [True, False, False, True]
    assert result.applied[0][1].emits and result.applied[2][1].emits == []  # the copy's message goes out once
    assert result.applied[1][1].emits  # applied before but never marked published: it may not have gone out
    assert await credits(ledger, alice) == 2  # 3 messages charged once each
    assert await stored(ledger, [earlier, twice, other]) == 3


async def test_a_poison_command_fails_alone_and_the_others_commit(ledger):
    alice, bob = user(), user()
    for who in (alice, bob):
        await grants.grant(ledger, ledger_repo.user_account(who), 3, "test", "k", 0)
    good_before = command(alice, "antes " * 1000)
    poison = command(bob, "veneno " * 1000, message_id="not-a-uuid")  # PostgreSQL refuses to store it
    good_after = command(alice, "despues " * 1000)
    result = await chat_batch.apply_batch(ledger, [good_before, poison, good_after], TERMS)
    assert [c for c, _ in result.applied] == [good_before, good_after]
    assert [c for c, _ in result.poisoned] == [poison]
    assert await credits(ledger, alice) == 1 and await credits(ledger, bob) == 3  # bob's charge rolled back
    assert await logged(ledger, [good_before, poison, good_after]) == {
        good_before.command_id: "applied",
        poison.command_id: "failed",
        good_after.command_id: "applied",
    }
    assert await ledger.fetchval("SELECT count(*) FROM inbox WHERE command_id = $1", poison.command_id) == 0


async def test_a_balance_that_runs_out_mid_batch_pays_for_exactly_the_first_messages(ledger):
    alice = user()
    await grants.grant(ledger, ledger_repo.user_account(alice), 3, "test", "k", 0)
    cmds = [command(alice, f"m{i} " * 1000) for i in range(5)]  # one credit each, never within grace
    result = await chat_batch.apply_batch(ledger, cmds, TERMS)
    assert [o.status for _, o in result.applied] == ["applied"] * 3 + ["rejected"] * 2
    assert await credits(ledger, alice) == 0 and await stored(ledger, cmds[:3]) == 3
    assert await stored(ledger, cmds[3:]) == 0


async def test_fifty_concurrent_sends_in_batches_charge_exactly_what_is_affordable(ledger):
    alice = user()
    await grants.grant(ledger, ledger_repo.user_account(alice), 10, "test", "k", 0)
    cmds = [command(alice, "w " * 1000) for _ in range(50)]
    batches = [cmds[i : i + 7] for i in range(0, 50, 7)]
    results = await asyncio.gather(*(chat_batch.apply_batch(ledger, b, TERMS) for b in batches))
    statuses = [o.status for r in results for _, o in r.applied]
    assert statuses.count("applied") == 10 and statuses.count("rejected") == 40
    assert await credits(ledger, alice) == 0 and await stored(ledger, cmds) == 10


async def test_room_messages_are_numbered_in_order_per_room_in_storage_and_in_what_is_sent(ledger):
    alice, bob = user(), user()
    for who in (alice, bob):
        await grants.grant(ledger, ledger_repo.user_account(who), 50, "test", "k", 0)
    room_a, room_b = f"room-{uuid.uuid4().hex[:6]}", f"room-{uuid.uuid4().hex[:6]}"

    def in_room(sender: str, room: str, i: int) -> SendChatMessage:
        return command(sender, f"hola {i}").model_copy(update={"room_id": room})

    senders = [alice if i % 2 else bob for i in range(45)]
    rooms = [room_a if i % 3 else room_b for i in range(45)]
    batches = [[in_room(senders[i], rooms[i], i) for i in range(j, j + 9)] for j in range(0, 45, 9)]
    results = await asyncio.gather(*(chat_batch.apply_batch(ledger, b, TERMS) for b in batches))
    sent = {}
    for result in results:
        for cmd, outcome in result.applied:
            ((new_message,),) = [[e for e in outcome.emits if e["event"] == "newMessage"]]
            sent[cmd.message_id] = new_message["data"]["seq"]
    for room in (room_a, room_b):
        rows = await ledger.fetch(
            "SELECT message_id, room_seq, payload FROM messages WHERE room_id = $1 ORDER BY seq", room
        )
        assert [r["room_seq"] for r in rows] == list(range(1, len(rows) + 1))  # commit order, no gaps
        assert all(r["payload"]["seq"] == r["room_seq"] == sent[str(r["message_id"])] for r in rows)
    for batch in batches:  # within a batch, a room's messages keep the batch's order
        for room in (room_a, room_b):
            seqs = [sent[c.message_id] for c in batch if c.room_id == room]
            assert seqs == sorted(seqs)
