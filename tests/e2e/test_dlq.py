"""``python -m scripts.dlq`` against real chat workers that dead-letter real poison commands.

Each test has its own database, vhost and worker pool, so the dead-letter queue holds only its
own messages. The fault is real: a PostgreSQL trigger refuses the room's messages until the
"fix" drops it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from infra import db, grants, ledger
from schemas.queues import CHAT_QUEUE, MARK_READ_ACTOR, SEND_BATCH_ACTOR, SEND_MESSAGE_ACTOR
from tests.support import isolation
from tests.support.dead_letters import DlqStack, invalid_mark_read, send
from tests.support.ledger_checks import assert_ledger_invariants
from tests.support.processes import Processes, wait_for_log


@pytest.fixture
async def dlq() -> AsyncIterator[DlqStack]:
    run = isolation.new_isolation()
    isolation.create_vhost(run.vhost)
    procs = Processes(run.env())
    pool = None
    try:
        await db.migrate(run.database_url)
        pool = await db.create_pool(run.database_url, max_size=4)
        stack = DlqStack(run, pool, procs.workers("chat", processes=1, threads=4))
        yield stack
        async with pool.acquire() as conn:
            await assert_ledger_invariants(conn)
    finally:
        procs.stop_all()
        if pool is not None:
            await pool.close()
        isolation.delete_vhost(run.vhost)
        await isolation.drop_database(run.database)


async def test_poison_commands_are_listed_then_requeued_after_a_fix_and_applied_once(dlq: DlqStack):
    user, room = f"dlq-{uuid.uuid4().hex[:8]}", f"room-{uuid.uuid4().hex[:8]}"
    await grants.grant(dlq.pool, ledger.user_account(user), 5, "test", "g")
    await dlq.refuse_room(room)
    sends = [send(user, room), send(user, room)]
    send_ids = [await dlq.publish(SEND_MESSAGE_ACTOR, cmd) for cmd in sends]
    bad = invalid_mark_read(user)
    await dlq.publish(MARK_READ_ACTOR, bad)
    await dlq.wait_dead(3)

    listed = dlq.listed()
    assert len(listed) == 3
    by_command = {m["command_id"]: m for m in listed}
    for cmd, message_id in zip(sends, send_ids, strict=True):
        dead = by_command[cmd["command_id"]]
        assert (dead["queue"], dead["actor"], dead["message_id"]) == (CHAT_QUEUE, SEND_MESSAGE_ACTOR, message_id)
        assert dead["command_type"] == "chat.send_message" and dead["retries"] == 5
        assert "test fault" in dead["error"] and "test fault" in dead["traceback_tail"][-1]
        assert dead["enqueued_at"] and dead["failed_at"] and dead["failed_at"] >= dead["enqueued_at"]
    invalid = by_command[bad["command_id"]]
    assert invalid["actor"] == MARK_READ_ACTOR and invalid["retries"] == 0 and "validation error" in invalid["error"]

    # Browsing neither loses nor reorders: the same messages in the same order, still all there.
    assert [m["message_id"] for m in dlq.listed()] == [m["message_id"] for m in listed]
    assert await dlq.dead_count() == 3
    table = dlq.cli("list", "--queue", "chat")
    print(table.stdout)
    assert table.returncode == 0 and "3 dead message(s)" in table.stdout
    assert all(cmd["command_id"] in table.stdout for cmd in sends) and "test fault" in table.stdout

    # Filters.
    assert [m["command_id"] for m in dlq.listed("--actor", MARK_READ_ACTOR)] == [bad["command_id"]]
    assert len(dlq.listed("--actor", SEND_MESSAGE_ACTOR)) == 2
    assert dlq.listed("--queue", "billing") == []
    assert len(dlq.listed("--since", "10m")) == 3
    assert dlq.listed("--since", "2099-01-01T00:00") == []
    assert len(dlq.listed("--limit", "1")) == 1
    bad_arg = dlq.cli("list", "--queue", "nope")
    assert bad_arg.returncode == 2 and "unknown queue" in bad_arg.stderr
    for bad_since in ("yesterday", "5w"):
        assert dlq.cli("list", "--since", bad_since).returncode == 2
    unreachable = dlq.cli("list", AMQP_URL="amqp://guest:guest@127.0.0.1:1/")
    assert unreachable.returncode == 2 and "error: RabbitMQ" in unreachable.stderr

    # A dry run changes nothing.
    dry = dlq.cli("requeue", "--actor", SEND_MESSAGE_ACTOR, "--dry-run")
    assert dry.returncode == 0 and "would requeue 2 message(s)" in dry.stdout
    assert await dlq.dead_count() == 3
    assert await dlq.pool.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room) == 0

    # After the fix, a requeue applies each command exactly once.
    await dlq.fix()
    moved = dlq.cli("requeue", "--actor", SEND_MESSAGE_ACTOR)
    assert moved.returncode == 0 and "requeued 2 message(s)" in moved.stdout, moved.stdout + moved.stderr
    ids = [cmd["command_id"] for cmd in sends]
    deadline = time.monotonic() + 60
    while (
        await dlq.pool.fetchval("SELECT count(*) FROM inbox WHERE command_id = ANY($1) AND status = 'applied'", ids) < 2
    ):
        assert time.monotonic() < deadline, "the requeued commands were not applied"
        await asyncio.sleep(0.2)
    assert await dlq.dead_count() == 1  # only the invalid one is left
    # The same requeue again finds nothing to move: no duplicate.
    again = dlq.cli("requeue", "--actor", SEND_MESSAGE_ACTOR)
    assert "requeued 0 message(s)" in again.stdout
    await asyncio.sleep(1.0)
    assert await dlq.pool.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room) == 2
    refs = await dlq.pool.fetchval("SELECT count(*) FROM ledger_transactions WHERE reference = ANY($1)", ids)
    assert refs == 2
    # 5 granted; 3000 words cost 3 credits (the first message's 500 left-over words carry to the second).
    credits = await dlq.pool.fetchval("SELECT credits FROM accounts WHERE account_id = $1", ledger.user_account(user))
    assert credits == 2


async def test_a_requeue_gets_fresh_retries_and_purge_deletes_only_what_matches(dlq: DlqStack):
    user, room = f"dlq-{uuid.uuid4().hex[:8]}", f"room-{uuid.uuid4().hex[:8]}"
    await grants.grant(dlq.pool, ledger.user_account(user), 5, "test", "g")
    await dlq.refuse_room(room)  # never fixed here
    poison_id = await dlq.publish(SEND_MESSAGE_ACTOR, send(user, room))
    bad = invalid_mark_read(user)
    await dlq.publish(MARK_READ_ACTOR, bad)
    await dlq.wait_dead(2)
    retrying = f"Retrying message '{poison_id}'"
    assert dlq.workers.log().count(retrying) == 5

    # Requeued, it fails again and comes back, having had a whole new set of five retries.
    moved = dlq.cli("requeue", "--queue", "chat", "--actor", SEND_MESSAGE_ACTOR)
    assert "requeued 1 message(s)" in moved.stdout
    wait_for_log(dlq.workers, retrying, count=10, timeout=90)
    await dlq.wait_dead(2)
    assert dlq.workers.log().count(retrying) == 10
    [dead] = dlq.listed("--actor", SEND_MESSAGE_ACTOR)
    assert dead["message_id"] == poison_id and dead["retries"] == 5

    # purge asks first: "no" or no answer deletes nothing.
    for answer in ("no\n", ""):
        refused = dlq.cli("purge", "--actor", MARK_READ_ACTOR, stdin=answer)
        assert refused.returncode == 1 and "nothing purged" in refused.stderr
        assert await dlq.dead_count() == 2

    purged = dlq.cli("purge", "--actor", MARK_READ_ACTOR, "--yes")
    assert purged.returncode == 0 and "purged 1 message(s)" in purged.stdout
    assert await dlq.dead_count() == 1
    assert [m["message_id"] for m in dlq.listed()] == [poison_id]

    # Typing the queue name confirms too.
    confirmed = dlq.cli("purge", "--queue", "chat", stdin="chat\n")
    assert confirmed.returncode == 0 and "purged 1 message(s)" in confirmed.stdout
    assert await dlq.dead_count() == 0
    # Nothing was charged for the command that never applied.
    assert await dlq.pool.fetchval("SELECT status FROM inbox WHERE command_id = $1", bad["command_id"]) == "failed"
    assert await dlq.pool.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room) == 0


async def test_a_poison_command_in_a_batch_fails_closed_alone_and_requeues_as_a_single_command(dlq: DlqStack):
    good_user, bad_user = f"dlq-{uuid.uuid4().hex[:8]}", f"dlq-{uuid.uuid4().hex[:8]}"
    room, refused = f"room-{uuid.uuid4().hex[:8]}", f"room-{uuid.uuid4().hex[:8]}"
    for user in (good_user, bad_user):
        await grants.grant(dlq.pool, ledger.user_account(user), 5, "test", "g")
    await dlq.refuse_room(refused)
    before, poison, after = send(good_user, room), send(bad_user, refused), send(good_user, room)
    batch = {"type": "chat.send_batch", "command_id": f"batch:{uuid.uuid4()}", "commands": [before, poison, after]}
    await dlq.publish(SEND_BATCH_ACTOR, batch)
    await dlq.wait_dead(1)

    (dead,) = dlq.listed()
    assert (dead["queue"], dead["actor"], dead["command_id"]) == (CHAT_QUEUE, SEND_MESSAGE_ACTOR, poison["command_id"])
    assert "test fault" in dead["error"]
    ids = [before["command_id"], poison["command_id"], after["command_id"]]
    inbox = dict(await dlq.pool.fetch("SELECT command_id, status FROM inbox WHERE command_id = ANY($1)", ids))
    assert inbox == {before["command_id"]: "applied", poison["command_id"]: "failed", after["command_id"]: "applied"}
    logged = dict(await dlq.pool.fetch("SELECT command_id, status FROM event_log WHERE command_id = ANY($1)", ids))
    assert logged == inbox
    assert await dlq.pool.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room) == 2
    credits = "SELECT credits FROM accounts WHERE account_id = $1"
    assert await dlq.pool.fetchval(credits, ledger.user_account(good_user)) == 2  # 3000 words: 3 credits
    assert await dlq.pool.fetchval(credits, ledger.user_account(bad_user)) == 5  # nothing charged

    # After the fix, the dead command alone is requeued to the single-command actor and applied once.
    await dlq.fix()
    moved = dlq.cli("requeue")
    assert moved.returncode == 0 and "requeued 1 message(s)" in moved.stdout, moved.stdout + moved.stderr
    deadline = time.monotonic() + 60
    while await dlq.pool.fetchval("SELECT status FROM inbox WHERE command_id = $1", poison["command_id"]) != "applied":
        assert time.monotonic() < deadline, "the requeued command was not applied"
        await asyncio.sleep(0.2)
    assert await dlq.pool.fetchval(credits, ledger.user_account(bad_user)) == 3
    assert await dlq.pool.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", refused) == 1
