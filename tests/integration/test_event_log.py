"""The event log's upsert rules and its filtered, batched reads, against the real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from infra import event_log
from infra.event_log import Filters, entry_for


def command(user: str, n: int, kind: str = "chat.send_message") -> dict:
    return {"type": kind, "command_id": f"test:{user}:{n}", "user_id": user}


async def record(pool, user: str, n: int, status: event_log.Status, error: str | None = None, **kw) -> str:
    entry = entry_for("chat", "chat_send_message", command(user, n, **kw), status, error)
    await event_log.record(pool, entry)
    return entry.command_id


async def row(pool, command_id: str):
    return await pool.fetchrow(
        "SELECT status, last_status, deliveries, duplicates, last_error FROM event_log WHERE command_id = $1",
        command_id,
    )


async def test_a_duplicate_never_overwrites_an_outcome_and_a_failure_is_fixed_by_a_later_apply(pool):
    user = f"u-{uuid.uuid4().hex[:8]}"
    applied = await record(pool, user, 1, "applied")
    await record(pool, user, 1, "duplicate")
    await record(pool, user, 1, "failed", "boom")  # e.g. a replay that failed: the effect is still there
    assert tuple(await row(pool, applied)) == ("applied", "failed", 3, 1, "boom")

    failed = await record(pool, user, 2, "failed", "db down")
    assert tuple(await row(pool, failed)) == ("failed", "failed", 1, 0, "db down")
    await record(pool, user, 2, "rejected")  # a replay after the fix
    assert tuple(await row(pool, failed)) == ("rejected", "rejected", 2, 0, "db down")

    found_done = await record(pool, user, 3, "failed", "x")
    await record(pool, user, 3, "duplicate")  # another delivery had applied it
    assert tuple(await row(pool, found_done)) == ("duplicate", "duplicate", 2, 1, "x")


async def test_select_filters_and_reads_in_keyset_batches(pool):
    user = f"u-{uuid.uuid4().hex[:8]}"
    ids = [await record(pool, user, n, "applied") for n in range(5)]
    other = await record(pool, user, 99, "failed", "x", kind="billing.send_tip")
    since = datetime.now(UTC) - timedelta(minutes=5)
    everything = Filters(since=since, user_id=user)
    # oldest first, across batches of 2 (ties on first_seen_at are ordered by command_id, in this order too)
    assert [r.command_id async for r in event_log.select(pool, everything, batch=2)] == [*ids, other]
    failed_tips = Filters(since=since, user_id=user, types=("billing.send_tip",), statuses=("failed",))
    rows = [r async for r in event_log.select(pool, failed_tips, batch=2)]
    assert [(r.command_id, r.actor_name, r.payload) for r in rows] == [
        (other, "chat_send_message", command(user, 99, kind="billing.send_tip"))
    ]
    assert await event_log.counts(pool, everything) == [
        ("billing.send_tip", "failed", 1),
        ("chat.send_message", "applied", 5),
    ]
    assert [r async for r in event_log.select(pool, Filters(since=since, until=since, user_id=user))] == []
    assert await event_log.counts(pool, Filters(since=datetime.now(UTC) + timedelta(minutes=1), user_id=user)) == []
