"""Past one machine, with real processes: quorum queues, AMQP failover, Redis Sentinel, a read pool.

Each test runs its own ingress node(s) and chat worker pool in its own vhost (and, for Sentinel,
its own key prefix), so what it counts and closes is only its own.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from infra.amqp import connect_first, topology
from schemas.commands import SendChatMessage, send_command_ids
from schemas.queues import ALL_QUEUES, CHAT_QUEUE, SEND_MESSAGE_ACTOR
from tests.support import isolation
from tests.support.admin_api import grant, stats
from tests.support.amqp import publish_commands
from tests.support.clients import ChatClient
from tests.support.ids import uid
from tests.support.isolation import ADMIN_TOKEN
from tests.support.processes import ROOT, Processes, free_port
from tests.support.sentinel import sentinel
from tests.support.stacks import Stack
from tests.support.tenants import create_tenant


def node_url(vhost: str, port: int = 5672) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/{vhost}"


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def own_vhost(iso) -> Iterator[str]:
    vhost = f"{iso.vhost}_scale_{uuid.uuid4().hex[:6]}"
    isolation.create_vhost(vhost)
    yield vhost
    isolation.delete_vhost(vhost)


@pytest.fixture
def run_procs() -> Iterator[list[Processes]]:
    """Process groups a test starts; all stopped (by pid) when it ends."""
    made: list[Processes] = []
    yield made
    for procs in made:
        procs.stop_all()


def start(run_procs: list[Processes], env: dict[str, str], nodes: int = 1) -> Stack:
    procs = Processes({**env, "RATE_LIMITS": "200/1s"})
    run_procs.append(procs)
    ingress = [procs.ingress() for _ in range(nodes)]
    return Stack(procs, ingress, procs.workers("chat", processes=1, threads=4))


async def round_trip(http, stack: Stack, clients: list[ChatClient], *, words: int = 1500) -> dict:
    """Alice (node 0) sends a charged message; Bob (the last node) receives it. Returns the newMessage."""
    alice, bob = ChatClient(uid("alice")), ChatClient(uid("bob"))
    clients += [alice, bob]
    await grant(http, stack, alice.user_id, 5, f"g-{alice.user_id}")
    await alice.connect(stack.ports[0])
    await bob.connect(stack.ports[-1])
    room = uid("room")
    await alice.join(room)
    await bob.join(room)
    ack = await alice.send(room, "w " * words)
    assert ack["status"] == "accepted", ack
    got = await bob.wait_for("newMessage", lambda m: m["messageId"] == ack["messageId"], timeout=60)
    assert got["creditInfo"]["charged"] == 2
    assert (await stats(http, stack, alice.user_id))["credits"] == 3
    return got


def queue_rows(vhost: str) -> dict[str, dict]:
    out = rabbitmqctl("list_queues", "-q", "-p", vhost, "--formatter", "json", "name", "type", "arguments")
    rows = json.loads(out)
    for row in rows:  # [[name, type, value], ...] -> {name: value}
        row["arguments"] = {name: value for name, _type, value in row["arguments"]}
    return {row["name"]: row for row in rows}


async def dead_count(url: str, queue: str) -> int:
    connection = await connect_first(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(f"{queue}.XQ", passive=True)
        return declared.declaration_result.message_count or 0


def poison(user: str) -> SendChatMessage:
    command_id, message_id = send_command_ids(user, None)
    return SendChatMessage(  # PostgreSQL refuses NUL in text: every attempt fails, retries go through .DQ
        command_id=command_id,
        message_id=message_id,
        user_id=user,
        username=user,
        room_id="room\x00",
        message="hola",
        client_message_id=None,
        accepted_at_ms=int(time.time() * 1000),
    )


async def test_quorum_queues_carry_chat_retries_and_dead_letters(
    own_vhost, stack_env, run_procs, http, clients, ledger
):
    live = node_url(own_vhost)
    stack = start(run_procs, {**stack_env, "AMQP_URL": live, "AMQP_QUEUE_TYPE": "quorum"})
    await round_trip(http, stack, clients)

    rows = queue_rows(own_vhost)
    for queue in ALL_QUEUES:  # ingress declared every capability's queues; the worker, chat's
        for name, _ in topology(queue, "quorum"):
            assert rows[name]["type"] == "quorum", rows.get(name)
    assert rows[CHAT_QUEUE]["arguments"] == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{CHAT_QUEUE}.XQ",
        "x-queue-type": "quorum",
    }
    assert rows[f"{CHAT_QUEUE}.XQ"]["arguments"] == {"x-message-ttl": 7 * 86_400_000, "x-queue-type": "quorum"}

    bad = poison(uid("poison"))
    await publish_commands(live, CHAT_QUEUE, SEND_MESSAGE_ACTOR, [bad], queue_type="quorum")
    deadline = time.monotonic() + 120  # five retries with backoff, each through the quorum .DQ
    while (count := await dead_count(live, CHAT_QUEUE)) != 1:
        assert time.monotonic() < deadline, f"{count} dead messages"
        await asyncio.sleep(0.3)
    assert await ledger.fetchval("SELECT status FROM inbox WHERE command_id = $1", bad.command_id) == "failed"

    # The operator tool reads the quorum dead-letter queue through a node list with a dead node first.
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "scripts.dlq", "list", "--json", "--queue", CHAT_QUEUE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**stack_env, "AMQP_URL": f"{node_url(own_vhost, free_port())};{live}", "AMQP_QUEUE_TYPE": "quorum"},
    )
    assert listed.returncode == 0, listed.stderr
    assert [m["command_id"] for m in json.loads(listed.stdout)["messages"]] == [bad.command_id]


async def send_until_accepted(client: ChatClient, room: str, text: str, timeout: float = 60) -> dict:
    """A send made while the node reconnects may be refused (503-like ack); the client retries it."""
    deadline = time.monotonic() + timeout
    while True:
        ack = await client.send(room, text, clientMessageId="after-loss")
        if ack["status"] == "accepted" or time.monotonic() > deadline:
            return ack
        await asyncio.sleep(0.5)


async def test_ingress_and_workers_skip_a_dead_node_and_survive_a_lost_connection(
    own_vhost, stack_env, run_procs, http, clients
):
    url = f"{node_url(own_vhost, free_port())};{node_url(own_vhost)}"
    stack = start(run_procs, {**stack_env, "AMQP_URL": url})
    first = await round_trip(http, stack, clients)
    alice, bob = clients[-2], clients[-1]

    rabbitmqctl("close_all_connections", "--vhost", own_vhost, "test: the node went away")
    node, workers = stack.nodes[0], stack.workers
    deadline = time.monotonic() + 60
    while "amqp.connection_lost" not in node.log():
        assert time.monotonic() < deadline, node.log()[-2000:]
        await asyncio.sleep(0.1)

    ack = await send_until_accepted(alice, first["roomId"], "w " * 10)
    assert ack["status"] == "accepted", ack
    got = await bob.wait_for("newMessage", lambda m: m["messageId"] == ack["messageId"], timeout=90)
    assert got["creditInfo"]["wordsLeft"] >= 0
    log = node.log()
    assert log.count('"amqp.connected"') >= 2, log[-3000:]  # the first connection, then the failover
    assert "amqp.connect_failed" in log  # the dead node, tried and skipped
    assert workers.popen.poll() is None


async def test_two_ingress_nodes_and_a_worker_through_redis_sentinel(own_vhost, stack_env, run_procs, http, clients):
    prefix = f"gksent{uuid.uuid4().hex[:8]}"
    try:
        with sentinel() as running:
            env = {**stack_env, "AMQP_URL": node_url(own_vhost), "REDIS_URL": running.url, "KEY_PREFIX": prefix}
            stack = start(run_procs, env, nodes=2)
            await round_trip(http, stack, clients)  # pub/sub from the worker to node 1, through the master
            # Presence (both nodes' heartbeats), ingress's and the worker's counters: our own keys, on the master.
            deadline = time.monotonic() + 60
            while True:
                async with http.get(stack.url("/api/chat/stats", node=1)) as resp:
                    body = await resp.json()
                if body["connections"] == 2 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert (body["connections"], body["messagesAccepted"], body["messagesDelivered"]) == (2, 1, 1), body
            async with http.get(stack.url("/health", node=1)) as resp:
                assert resp.status == 200, await resp.text()
            for procs in run_procs:
                procs.stop_all()
    finally:
        isolation.delete_redis_keys(prefix)


@pytest.fixture
async def read_role(iso, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """A login role that may only SELECT in the test database: what a replica's reader can do."""
    role = f"gk_read_{uuid.uuid4().hex[:8]}"
    await pool.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        await pool.execute(f'GRANT CONNECT ON DATABASE "{iso.database}" TO "{role}"')
        await pool.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        await pool.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        yield role
    finally:
        await pool.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        await pool.execute(f'DROP OWNED BY "{role}"')
        await pool.execute(f'DROP ROLE "{role}"')


def as_role(database_url: str, role: str) -> str:
    parts = urlsplit(database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}", query="application_name=gatekeeper-read"))


async def get_ok(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(url, headers={"x-admin-token": ADMIN_TOKEN}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_lagging_reads_use_the_read_url_and_ledger_writes_the_primary(
    iso, own_vhost, stack_env, run_procs, read_role, http, clients, ledger
):
    read_url = as_role(iso.database_url, read_role)
    refused = await asyncpg.connect(read_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await refused.execute("INSERT INTO schema_migrations (version) VALUES ('read-role-test')")
    finally:
        await refused.close()

    env = {**stack_env, "AMQP_URL": node_url(own_vhost), "DATABASE_READ_URL": read_url}
    stack = start(run_procs, env)
    sent = await round_trip(http, stack, clients)  # a grant and a charged message: writes, on the primary
    user = sent["userId"]
    tenant = await create_tenant(http, stack, {"x-admin-token": ADMIN_TOKEN}, credits=1)

    history = await get_ok(http, stack.url(f"/api/credits/history/{user}"))
    assert [(e["kind"], e["amount"]) for e in history["entries"]] == [("charge", -2), ("grant", 5)], history
    credit_stats = await get_ok(http, stack.url(f"/api/credits/stats/{user}"))
    assert (credit_stats["credits"], credit_stats["creditsChargedTotal"]) == (3, 2)
    usage = await get_ok(http, stack.url(f"/api/plans/usage/{user}"))
    assert usage["userId"] == user
    analytics = await get_ok(http, stack.url(f"/api/analytics/conversations?tenant={tenant['tenantId']}"))
    assert analytics["tenant"] == tenant["tenantId"]
    await get_ok(http, stack.url(f"/api/analytics/intents?tenant={tenant['tenantId']}"))

    readers = await ledger.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND application_name = 'gatekeeper-read'"
        " AND datname = $2",
        read_role,
        iso.database,
    )
    assert readers >= 1

    # Proof of the routing: with the reader's SELECT taken away, the lagging reads fail and writes do not.
    await ledger.execute(f'REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM "{read_role}"')
    async with http.get(stack.url(f"/api/credits/stats/{user}"), headers={"x-admin-token": ADMIN_TOKEN}) as resp:
        assert resp.status == 500, await resp.text()
    assert (await grant(http, stack, user, 1, f"after-revoke-{user}"))["credits"] == 4
    assert await ledger.fetchval("SELECT count(*) FROM messages WHERE message_id = $1", uuid.UUID(sent["messageId"]))
