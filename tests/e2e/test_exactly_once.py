"""Exactly-once effects over the real broker: duplicates, redeliveries and a worker killed mid-flight."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from schemas.commands import SendChatBatch, SendChatMessage
from schemas.queues import CHAT_QUEUE, SEND_BATCH_ACTOR, SEND_MESSAGE_ACTOR
from tests.support import isolation
from tests.support.admin_api import grant, stats
from tests.support.amqp import publish_commands, queue_counts
from tests.support.clients import ChatClient
from tests.support.commands import chat_command
from tests.support.ids import uid
from tests.support.processes import Processes
from tests.support.waiting import wait_until


async def publish_raw(amqp_url: str, commands: list[SendChatMessage]) -> None:
    await publish_commands(amqp_url, CHAT_QUEUE, SEND_MESSAGE_ACTOR, commands)


async def test_the_same_command_published_five_times_charges_once(stack, stack_env, http, clients, ledger):
    watcher = ChatClient(uid("watch"))
    clients.append(watcher)
    await watcher.connect(stack.ports[1])
    room = uid("room")
    await watcher.join(room)
    user = uid("dup")
    await grant(http, stack, user, 5, "g")
    cmd = chat_command(user, room, 1500, client_id="once")
    await publish_raw(stack_env["AMQP_URL"], [cmd] * 5)

    await watcher.wait_for("newMessage", lambda m: m["messageId"] == cmd.message_id)
    await wait_until(lambda: ledger.fetchval("SELECT attempts FROM inbox WHERE command_id = $1", cmd.command_id), 1)
    await asyncio.sleep(1.0)  # let the four duplicates drain
    s = await stats(http, stack, user)
    assert (s["credits"], s["creditsChargedTotal"], s["wordsUsedTotal"]) == (3, 2, 1500)
    assert await ledger.fetchval("SELECT count(*) FROM messages WHERE message_id = $1", uuid.UUID(cmd.message_id)) == 1
    assert await ledger.fetchval("SELECT count(*) FROM ledger_transactions WHERE reference = $1", cmd.command_id) == 1
    # Duplicates find the result marked published and send nothing again: the room sees it once.
    assert [m["messageId"] for m in watcher.events["newMessage"]] == [cmd.message_id]


@pytest.fixture
def own_vhost(iso):
    """A vhost with no other consumers, so this test alone decides which worker holds what."""
    vhost = f"{iso.vhost}_kill"
    isolation.create_vhost(vhost)
    yield f"{isolation.AMQP_BASE}/{vhost}", vhost
    isolation.delete_vhost(vhost)


@pytest.mark.parametrize("in_batches", [False, True], ids=["single", "batches"])
async def test_kill_minus_9_with_unacked_messages_loses_and_doubles_nothing(stack_env, own_vhost, ledger, in_batches):
    amqp_url, vhost = own_vhost
    env = {**stack_env, "AMQP_URL": amqp_url}
    user = uid("kill")
    room = uid("room")
    from infra import grants

    total, affordable = 1000, 700
    await grants.grant(ledger, f"user:{user}", affordable, "test", "g", 0)
    commands = [chat_command(user, room, 1000) for _ in range(total)]  # one credit each
    if in_batches:  # as ingress flushers publish them: 40 messages of 25 commands
        batches = [
            SendChatBatch(command_id=f"batch:{uuid.uuid4()}", commands=commands[i : i + 25])
            for i in range(0, total, 25)
        ]
        await publish_commands(amqp_url, CHAT_QUEUE, SEND_BATCH_ACTOR, batches)
    else:
        await publish_raw(amqp_url, commands)
    ids = [c.command_id for c in commands]

    procs = Processes(env)
    try:
        first = procs.workers("chat", processes=1, threads=2)
        done = lambda: ledger.fetchval("SELECT count(*) FROM inbox WHERE command_id = ANY($1)", ids)  # noqa: E731
        deadline = time.monotonic() + 60
        while await done() < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # Hold the account's row lock: each worker thread's next transaction claims its command, then
        # waits for the lock, so the SIGKILL below lands while those transactions are open.
        async with ledger.acquire() as holder, holder.transaction():
            await holder.execute("SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE", f"user:{user}")
            open_transactions = 0
            while open_transactions == 0 and time.monotonic() < deadline:
                open_transactions = await ledger.fetchval(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                    " WHERE NOT l.granted AND a.datname = current_database() AND a.xact_start IS NOT NULL"
                )
            ready, unacked = 0, 0
            while unacked == 0 and time.monotonic() < deadline:
                ready, unacked = await asyncio.to_thread(queue_counts, vhost, CHAT_QUEUE)
            first.kill9()  # SIGKILL the pool and its forked workers mid-flight, mid-transaction
        applied_at_kill = await done()
        assert open_transactions > 0, "no worker transaction was open when the pool was killed"
        assert unacked > 0, "the worker held no unacked messages when it was killed"
        assert applied_at_kill < len(commands), "everything finished before the kill; nothing was tested"

        procs.workers("chat", processes=1, threads=4)  # a fresh pool picks up the redelivered messages
        await wait_until(done, len(commands), timeout=120)
        await wait_until(lambda: asyncio.to_thread(queue_counts, vhost, CHAT_QUEUE), (0, 0), timeout=60)
    finally:
        procs.stop_all()

    rows = await ledger.fetch("SELECT status, count(*) AS n FROM inbox WHERE command_id = ANY($1) GROUP BY 1", ids)
    assert {r["status"]: r["n"] for r in rows} == {"applied": affordable, "rejected": total - affordable}
    balance = await ledger.fetchrow(
        "SELECT credits, credits_charged_total, words_used_total FROM accounts WHERE account_id = $1", f"user:{user}"
    )
    assert tuple(balance) == (0, affordable, affordable * 1000)
    assert await ledger.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room) == affordable
    charges = await ledger.fetchval("SELECT count(*) FROM ledger_transactions WHERE reference = ANY($1)", ids)
    assert charges == affordable
    print(
        f"killed with {ready} ready / {unacked} unacked, {open_transactions} transaction(s) open,"
        f" {applied_at_kill} applied at the kill"
    )


async def test_a_command_that_keeps_failing_fails_closed(stack, stack_env, http, clients, ledger):
    """PostgreSQL refuses NUL in text: a poison command that bypassed ingress validation.

    The charge is written before the message row fails, so this also proves the rollback.

    After its retries it is recorded as failed, its sender is told, and nothing is charged.
    """
    user = ChatClient(uid("poison"))
    clients.append(user)
    await grant(http, stack, user.user_id, 3, "g")
    await user.connect(stack.ports[0])
    room = uid("room")
    await user.join(room)
    cmd = chat_command(user.user_id, room + "\x00", 1500)
    await publish_raw(stack_env["AMQP_URL"], [cmd])

    error = await user.wait_for("error", timeout=60)
    assert error["code"] == "internal" and error["messageId"] == cmd.message_id and error["roomId"] == cmd.room_id
    row = await ledger.fetchrow("SELECT status, result FROM inbox WHERE command_id = $1", cmd.command_id)
    assert row["status"] == "failed" and "CharacterNotInRepertoire" in row["result"]["error"]
    s = await stats(http, stack, user.user_id)
    assert (s["credits"], s["creditsChargedTotal"]) == (3, 0)
    assert not user.events["newMessage"]
