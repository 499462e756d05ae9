"""One sender's messages in one room are applied and delivered in the order sent, with ``seq``
strictly increasing per room, in storage and in what every member receives.

Two ingress nodes and a chat pool of two processes of four threads each, so that batches of one
room could be applied concurrently if nothing kept them apart. Every sender emits all its messages
at once (socket.io-client writes them to the socket in that order), so its sends span several
flushes, and so several AMQP messages, of its node.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Iterator

import asyncpg
import pytest

from tests.support import isolation
from tests.support.admin_api import grant, stats
from tests.support.clients import ChatClient
from tests.support.ids import uid
from tests.support.processes import Processes
from tests.support.stacks import Stack

ROOMS = 6
MEMBERS = 3  # per room; every member sends
SENDS_EACH = 40
CUT_ROUNDS_MAX = 6


@pytest.fixture
def order_stack(iso, stack_env) -> Iterator[Stack]:
    vhost = f"{iso.vhost}_order"
    isolation.create_vhost(vhost)
    procs = Processes({**stack_env, "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}", "RATE_LIMITS": "1000/1s"})
    try:
        nodes = [procs.ingress(), procs.ingress()]
        workers = procs.workers("chat", processes=2, threads=4)
        yield Stack(procs, nodes, workers)
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


def numbered(text: str) -> int:
    return int(text.rsplit(" ", 1)[1])


async def assert_stored_in_order(ledger, room: str, members: list[ChatClient], sent_each: int) -> None:
    """room_seq 1..N in commit order, each sender's messages stored in the order sent."""
    rows = await ledger.fetch(
        "SELECT user_id, room_seq, payload->>'message' AS message FROM messages WHERE room_id = $1 ORDER BY room_seq",
        room,
    )
    assert [r["room_seq"] for r in rows] == list(range(1, len(members) * sent_each + 1))
    stored: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        stored[r["user_id"]].append(numbered(r["message"]))
    assert stored == {c.user_id: list(range(sent_each)) for c in members}


async def test_one_senders_messages_are_applied_and_delivered_in_the_order_sent(order_stack, http, clients, ledger):
    stack = order_stack
    rooms = {uid("room"): [ChatClient(uid(f"u{r}m{m}")) for m in range(MEMBERS)] for r in range(ROOMS)}
    for members in rooms.values():
        clients.extend(members)
    await asyncio.gather(*(grant(http, stack, c.user_id, 5, "g") for c in clients))
    await asyncio.gather(*(c.connect(stack.ports[i % 2]) for i, c in enumerate(clients)))
    for room, members in rooms.items():
        for client in members:
            await client.join(room)

    async def send_all(room: str, client: ChatClient) -> list[dict]:
        # Created in order, each task writes its packet before it first waits: sent in this order.
        return await asyncio.gather(*(client.send(room, f"palabra numero {n}") for n in range(SENDS_EACH)))

    results = await asyncio.gather(*(send_all(room, c) for room, members in rooms.items() for c in members))
    acks = [a for acks in results for a in acks]
    assert [a["status"] for a in acks] == ["accepted"] * len(acks), [a for a in acks if a["status"] != "accepted"]

    per_room = MEMBERS * SENDS_EACH
    for room, members in rooms.items():
        for receiver in members:
            got = await receiver.wait_count("newMessage", per_room, lambda m, room=room: m["roomId"] == room, 60)
            seqs = [m["seq"] for m in got]
            assert all(a < b for a, b in itertools.pairwise(seqs)), f"seq not increasing: {seqs}"
            by_sender: dict[str, list[int]] = defaultdict(list)
            for m in got:
                by_sender[m["userId"]].append(numbered(m["message"]))
            for sender, numbers in by_sender.items():
                assert numbers == list(range(SENDS_EACH)), f"{receiver.user_id} got {sender}'s out of order: {numbers}"

        await assert_stored_in_order(ledger, room, members, SENDS_EACH)


async def test_order_holds_while_the_database_connections_are_cut(order_stack, iso, http, clients, ledger):
    """Every database connection of the test database is terminated every 50 ms while the sends
    are applied: a batch that loses its connection is retried where it stands, so the messages of
    its partition wait for it, and nothing is lost, doubled in storage or charged twice."""
    stack = order_stack
    members = [ChatClient(uid(f"cut{m}")) for m in range(MEMBERS)]
    clients.extend(members)
    room = uid("cutroom")
    await asyncio.gather(*(grant(http, stack, c.user_id, 5, "g") for c in members))
    await asyncio.gather(*(c.connect(stack.ports[i % 2]) for i, c in enumerate(members)))
    for client in members:
        await client.join(room)

    killer = await asyncpg.connect(iso.database_url)
    cutting = asyncio.Event()

    async def cut_connections() -> int:
        cuts = 0
        while not cutting.is_set():
            cuts += await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            await asyncio.sleep(0.05)
        return cuts

    cutter = asyncio.create_task(cut_connections())
    try:
        sent = 0  # per member; rounds go on until a batch has lost its connection (6 at most)
        for _ in range(CUT_ROUNDS_MAX):
            numbers = range(sent, sent + SENDS_EACH)
            results = await asyncio.gather(
                *(asyncio.gather(*(c.send(room, f"palabra numero {n}") for n in numbers)) for c in members)
            )
            acks = [a for acks in results for a in acks]
            assert [a["status"] for a in acks] == ["accepted"] * len(acks), [
                a for a in acks if a["status"] != "accepted"
            ]
            sent += SENDS_EACH
            if "chat.retry_in_place" in stack.workers.log():
                break
    finally:
        cutting.set()  # the database is reachable again: the retried batches must now go through
        cuts = await cutter
        await killer.close()
    await ledger.expire_connections()  # its idle connections were cut too
    assert cuts > 0
    retried = stack.workers.log().count("chat.retry_in_place")
    assert retried > 0, "no batch lost its connection: the fault did not land"
    print(f"{cuts} connections cut, {retried} in-place retries")

    per_room = MEMBERS * sent
    for receiver in members:
        got = await receiver.wait_count("newMessage", per_room, lambda m: m["roomId"] == room, 90)
        first_seen: dict[str, dict] = {}
        for m in got:
            first_seen.setdefault(m["messageId"], m)
        assert len(first_seen) == per_room
        seqs = [m["seq"] for m in first_seen.values()]
        assert all(a < b for a, b in itertools.pairwise(seqs)), f"seq not increasing: {seqs}"
        by_sender: dict[str, list[int]] = defaultdict(list)
        for m in first_seen.values():
            by_sender[m["userId"]].append(numbered(m["message"]))
        assert by_sender == {c.user_id: list(range(sent)) for c in members}, receiver.user_id

    await assert_stored_in_order(ledger, room, members, sent)
    for client in members:  # at most 240 messages of 3 words each: one credit opened
        s = await stats(http, stack, client.user_id)
        assert (s["credits"], s["creditsChargedTotal"], s["wordsUsedTotal"]) == (4, 1, 3 * sent)
