"""The admin console's APIs against real ingress nodes, a real chat worker pool and RabbitMQ.

Dead letters are real: a PostgreSQL trigger refuses one room's messages, so the chat worker
retries and dead-letters them; the "fix" drops the trigger. The session's dead-letter queue may
hold other tests' messages, so assertions look at this test's message ids only. The series are
checked on a node of their own, over a database holding only the rows the test put there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
import pytest

from infra import db, grants, ledger
from schemas.queues import ALL_QUEUES, CHAT_QUEUE, MARK_READ_ACTOR, SEND_MESSAGE_ACTOR
from tests.support import isolation
from tests.support.admin_api import call, grant
from tests.support.clients import make_token
from tests.support.dead_letters import DlqStack, Fault, invalid_mark_read, send, wait_listed
from tests.support.processes import Proc, Processes
from tests.support.stacks import Stack

DEADLINE_S = 120
REQUEUE = "/api/admin/dead-letters/requeue"
PURGE = "/api/admin/dead-letters/purge"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_admin_apis_refuse_anyone_but_an_admin(stack: Stack, http, admin_headers):
    endpoints = [
        ("/api/admin/queues", None),
        ("/api/admin/dead-letters", None),
        (REQUEUE, {"messageIds": [str(uuid.uuid4())]}),
        (PURGE, {"messageIds": [str(uuid.uuid4())]}),
        ("/api/admin/series?metric=messages", None),
    ]
    tenant = f"t-{uuid.uuid4().hex[:6]}"
    refused = {
        "nobody": {},
        "user": bearer(make_token("someone")),
        "operator": bearer(make_token("op", role="operator", tenant=tenant)),
        "wrong admin token": {"x-admin-token": "not-the-token"},
        "admin role, wrong secret": bearer(
            jwt.encode(
                {"sub": "x", "role": "admin", "exp": int(time.time()) + 60}, "another-secret-" + "x" * 32, "HS256"
            )
        ),
    }
    for who, headers in refused.items():
        for path, body in endpoints:
            status, answer = await call(http, stack.url(path), headers, body)
            assert status == 403, (who, path, status, answer)
            assert answer["error"]["code"] == "forbidden"
    admin_jwt = bearer(make_token("root", role="admin"))
    for headers in (admin_headers, admin_jwt):
        status, _ = await call(http, stack.url("/api/admin/series?metric=credits"), headers)
        assert status == 200
        status, _ = await call(http, stack.url("/api/admin/dead-letters?queue=billing"), headers)
        assert status == 200


async def test_queues_show_one_row_per_queue_with_the_chat_pool_consuming(stack: Stack, http, admin_headers):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        status, doc = await call(http, stack.url("/api/admin/queues", node=1), admin_headers)
        assert status == 200, doc
        rows = {row["queue"]: row for row in doc["rows"]}
        if rows[CHAT_QUEUE]["consumers"] > 0:
            break
        assert time.monotonic() < deadline, f"the chat pool never showed as consumers: {rows[CHAT_QUEUE]}"
        await asyncio.sleep(0.5)
    assert [row["queue"] for row in doc["rows"]] == list(ALL_QUEUES)
    assert doc["source"] in ("management", "rabbitmqctl") and doc["vhost"]
    chat = rows[CHAT_QUEUE]
    assert chat["state"] != "absent"
    for key in ("ready", "unacked", "delayed", "dead", "consumers", "in_rate", "out_rate", "oldest_age_s"):
        assert key in chat
    if doc["source"] == "management":
        assert isinstance(chat["in_rate"], float) and doc["rate_window_s"] == 60


async def test_dead_letters_are_listed_and_only_the_selected_one_is_requeued(
    stack: Stack, iso, pool, http, admin_headers
):
    user, room = f"adm-{uuid.uuid4().hex[:8]}", f"room-{uuid.uuid4().hex[:8]}"
    await grant(http, stack, user, 5, "admin-api")
    fault = Fault(pool, room)
    await fault.start()
    try:
        publisher = DlqStack(iso, pool, stack.workers)
        commands = [send(user, room, words=10), send(user, room, words=10)]
        chosen, other = [await publisher.publish(SEND_MESSAGE_ACTOR, c) for c in commands]
        listed = await wait_listed(http, stack, admin_headers, {chosen, other})
        for message_id, cmd in ((chosen, commands[0]), (other, commands[1])):
            dead = listed[message_id]
            assert (dead["queue"], dead["actor"], dead["command_id"]) == (
                CHAT_QUEUE,
                SEND_MESSAGE_ACTOR,
                cmd["command_id"],
            )
            assert "test fault" in dead["error"] and "test fault" in dead["traceback_tail"][-1]
            assert dead["traceback"].startswith("Traceback") and dead["failed_at"] and dead["retries"] == 5

        # Filters and their validation.
        url = stack.url("/api/admin/dead-letters")
        _, doc = await call(http, f"{url}?queue=billing", admin_headers)
        assert not {m["message_id"] for m in doc["messages"]} & {chosen, other}
        _, doc = await call(http, f"{url}?since=2099-01-01T00:00", admin_headers)
        assert doc["messages"] == []
        _, doc = await call(http, f"{url}?limit=1", admin_headers)
        assert len(doc["messages"]) == 1 and doc["limit"] == 1
        for bad in ("queue=nope", "since=yesterday", "limit=0", "limit=501", "limit=x"):
            status, doc = await call(http, f"{url}?{bad}", admin_headers)
            assert status == 400 and doc["error"]["code"] == "bad_request", bad
        for body in ({"messageIds": []}, {"messageIds": [chosen], "queue": "chat"}, {"queue": "nope"}, {"x": 1}):
            status, doc = await call(http, stack.url(REQUEUE), admin_headers, body)
            assert status == 400, (body, doc)
        status, _ = await call(http, stack.url(PURGE), admin_headers, {"actor": SEND_MESSAGE_ACTOR})
        assert status == 400  # purge takes named messages only

        # After the fix, requeueing one applies that one, once; the other stays dead.
        await fault.fix()
        status, moved = await call(http, stack.url(REQUEUE, node=1), admin_headers, {"messageIds": [chosen]})
        assert status == 200, moved
        assert [m["message_id"] for m in moved["requeued"]] == [chosen] and moved["missing"] == []
        deadline = time.monotonic() + DEADLINE_S
        chosen_cmd, other_cmd = commands[0]["command_id"], commands[1]["command_id"]
        while await pool.fetchval("SELECT status FROM inbox WHERE command_id = $1", chosen_cmd) != "applied":
            assert time.monotonic() < deadline, "the requeued command was not applied"
            await asyncio.sleep(0.2)
        status, doc = await call(http, f"{url}?actor={SEND_MESSAGE_ACTOR}", admin_headers)
        ids = {m["message_id"] for m in doc["messages"]}
        assert other in ids and chosen not in ids
        again = await call(http, stack.url(REQUEUE), admin_headers, {"messageIds": [chosen]})
        assert again == (200, {"requeued": [], "undecodable": [], "missing": [chosen]})

        # Purge deletes exactly the named one; it never applies.
        status, purged = await call(http, stack.url(PURGE), admin_headers, {"messageIds": [other]})
        assert status == 200 and [m["message_id"] for m in purged["purged"]] == [other]
        _, doc = await call(http, f"{url}?actor={SEND_MESSAGE_ACTOR}", admin_headers)
        assert other not in {m["message_id"] for m in doc["messages"]}
        await asyncio.sleep(1.0)  # nothing else may arrive: no duplicate of the requeued one
        assert await pool.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room) == 1
        assert await pool.fetchval("SELECT status FROM inbox WHERE command_id = $1", other_cmd) == "failed"
        charges = await pool.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'charge' AND reference = ANY($1)",
            [chosen_cmd, other_cmd],
        )
        assert charges == 1
    finally:
        await fault.fix()


async def test_requeue_by_filters_moves_only_the_matching_dead_letter(stack: Stack, iso, pool, http, admin_headers):
    user, room = f"adm-{uuid.uuid4().hex[:8]}", f"room-{uuid.uuid4().hex[:8]}"
    await grant(http, stack, user, 5, "admin-api-filters")
    # Earlier dead letters of the same actor may still be queued: `since` leaves them out.
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).isoformat()
    fault = Fault(pool, room)
    await fault.start()
    try:
        publisher = DlqStack(iso, pool, stack.workers)
        sent = send(user, room, words=10)
        send_id = await publisher.publish(SEND_MESSAGE_ACTOR, sent)
        read_id = await publisher.publish(MARK_READ_ACTOR, invalid_mark_read(user))  # dead at once, same queue
        await wait_listed(http, stack, admin_headers, {read_id}, actor=MARK_READ_ACTOR)
        await wait_listed(http, stack, admin_headers, {send_id})

        await fault.fix()
        status, moved = await call(
            http, stack.url(REQUEUE), admin_headers, {"queue": "chat", "actor": SEND_MESSAGE_ACTOR, "since": since}
        )
        assert status == 200, moved
        assert [m["message_id"] for m in moved["requeued"]] == [send_id], moved
        assert moved["undecodable"] == [] and moved["missing"] == []
        deadline = time.monotonic() + DEADLINE_S
        while await pool.fetchval("SELECT status FROM inbox WHERE command_id = $1", sent["command_id"]) != "applied":
            assert time.monotonic() < deadline, "the requeued command was not applied"
            await asyncio.sleep(0.2)

        url = stack.url("/api/admin/dead-letters")
        _, doc = await call(http, f"{url}?actor={SEND_MESSAGE_ACTOR}&limit=500", admin_headers)
        assert send_id not in {m["message_id"] for m in doc["messages"]}
        _, doc = await call(http, f"{url}?actor={MARK_READ_ACTOR}&limit=500", admin_headers)
        assert read_id in {m["message_id"] for m in doc["messages"]}  # not matched: still dead
        status, purged = await call(http, stack.url(PURGE), admin_headers, {"messageIds": [read_id]})
        assert status == 200 and [m["message_id"] for m in purged["purged"]] == [read_id]
    finally:
        await fault.fix()


# --- series ------------------------------------------------------------------------------------

UNTIL = dt.datetime(2020, 1, 1, 1, 0, tzinfo=dt.UTC)


def at(minute: int, second: float = 0) -> dt.datetime:
    """A moment in the hour before UNTIL: at(55, 10) is 00:55:10."""
    return dt.datetime(2020, 1, 1, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=minute, seconds=second)


@dataclass
class SeriesNode:
    node: Proc
    pool: asyncpg.Pool

    def url(self, query: str) -> str:
        return f"http://127.0.0.1:{self.node.port}/api/admin/series?{query}"


@pytest.fixture(scope="module")
async def series_node() -> AsyncIterator[SeriesNode]:
    """An ingress node over a database holding exactly the rows below."""
    run = isolation.new_isolation()
    isolation.create_vhost(run.vhost)
    procs = Processes(run.env())
    pool = None
    try:
        await db.migrate(run.database_url)
        pool = await db.create_pool(run.database_url, max_size=2)
        await _insert_known_rows(pool)
        yield SeriesNode(procs.ingress(), pool)
    finally:
        procs.stop_all()
        if pool is not None:
            await pool.close()
        isolation.delete_vhost(run.vhost)
        await isolation.drop_database(run.database)
        isolation.delete_redis_keys(run.key_prefix)


async def _insert_known_rows(pool: asyncpg.Pool) -> None:
    messages = [at(55, 10), at(55, 59.9), at(57, 59.999), at(54, 59), UNTIL]  # the last two: outside
    await pool.executemany(
        "INSERT INTO messages (message_id, room_id, user_id, words, payload, created_at)"
        " VALUES ($1, 'r', 'u', 1, '{}'::jsonb, $2)",
        [(uuid.uuid4(), moment) for moment in messages],
    )
    account = ledger.user_account("series-user")
    await grants.grant(pool, account, 100, "test", "series")  # a grant: not a charge
    movements = [
        ("charge", 3, at(56, 30)),
        ("call_fee", 2, at(56, 40)),
        ("call", 4, at(59, 59)),
        ("tip", 7, at(56, 50)),  # not a charge
        ("charge", 11, at(53)),  # before the window
    ]
    async with pool.acquire() as conn, conn.transaction():
        for i, (kind, amount, moment) in enumerate(movements):
            assert await ledger.transfer(conn, account, ledger.REVENUE, amount, kind, f"series-{i}")
            await conn.execute(
                "UPDATE ledger_transactions SET created_at = $1 WHERE kind = $2 AND reference = $3",
                moment,
                kind,
                f"series-{i}",
            )
    usage = [(10, 5, "ok", at(58)), (1, 2, "ok", at(58, 30)), (4, 0, "error", at(59)), (100, 100, "ok", UNTIL)]
    await pool.executemany(
        "INSERT INTO ai_usage (call_id, command_id, purpose, asker, model, prompt_tokens, completion_tokens,"
        " latency_ms, status, created_at) VALUES ($1, 'c', 'reply', 'user:u', 'm', $2, $3, 1, $4, $5)",
        [(uuid.uuid4(), p, c, s, moment) for p, c, s, moment in usage],
    )


async def series(http, node: SeriesNode, query: str) -> dict[str, Any]:
    status, doc = await call(http, node.url(query), {"x-admin-token": isolation.ADMIN_TOKEN})
    assert status == 200, doc
    return doc


async def test_series_buckets_count_and_sum_known_rows(series_node: SeriesNode, http):
    window = "minutes=5&step=60&until=2020-01-01T01:00:00Z"
    doc = await series(http, series_node, f"metric=messages&{window}")
    assert [p["t"] for p in doc["points"]] == [at(m).isoformat() for m in range(55, 60)]
    assert [p["v"] for p in doc["points"]] == [2 / 60, 0, 1 / 60, 0, 0]
    assert doc["total"] == 3 and doc["unit"] == "messages/s" and "messages" in doc["source"]
    assert (doc["start"], doc["end"]) == (at(55).isoformat(), UNTIL.isoformat())

    doc = await series(http, series_node, f"metric=credits&{window}")
    assert [p["v"] for p in doc["points"]] == [0, 5, 0, 0, 4] and doc["total"] == 9

    doc = await series(http, series_node, f"metric=ai_tokens&{window}")
    assert [p["v"] for p in doc["points"]] == [0, 0, 0, 18, 4] and doc["total"] == 22

    # Smaller steps; an "until" inside a bucket ends the window at that bucket's start (no partial bucket),
    # and an "until" without a zone is UTC.
    doc = await series(http, series_node, "metric=ai_tokens&minutes=2&step=30&until=2020-01-01T01:00:29")
    assert [p["v"] for p in doc["points"]] == [15, 3, 4, 0]
    doc = await series(http, series_node, "metric=messages&minutes=10&step=600&until=2020-01-01T01:09:59%2B00:00")
    assert [p["t"] for p in doc["points"]] == [at(50).isoformat()] and doc["points"][0]["v"] == 4 / 600


async def test_series_default_to_the_last_hour_by_minute(series_node: SeriesNode, http):
    doc = await series(http, series_node, "metric=credits")
    assert (doc["minutes"], doc["step"], len(doc["points"])) == (60, 60, 60)
    end = dt.datetime.fromisoformat(doc["end"])
    assert end.second == 0 and dt.datetime.now(dt.UTC) - end < dt.timedelta(seconds=70)
    assert all(p["v"] == 0 for p in doc["points"]) and doc["total"] == 0


async def test_series_parameters_are_validated(series_node: SeriesNode, http):
    for query in (
        "metric=nope",
        "",
        "metric=messages&minutes=0",
        "metric=messages&minutes=1441",
        "metric=messages&step=5",
        "metric=messages&step=3601",
        "metric=messages&minutes=1&step=3600",
        "metric=messages&minutes=7&step=60x",
        "metric=messages&minutes=1440&step=30",
        "metric=messages&until=yesterday",
    ):
        status, doc = await call(http, series_node.url(query), {"x-admin-token": isolation.ADMIN_TOKEN})
        assert status == 400 and doc["error"]["code"] == "bad_request", (query, doc)
