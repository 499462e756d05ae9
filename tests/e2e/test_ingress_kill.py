"""``kill -9`` of an ingress node under load: nothing acked is lost, nothing is applied twice.

Two real ingress nodes and a chat worker pool, in a vhost of their own. Thirty users in six rooms
connect to node A and keep sends in flight, each with its own ``clientMessageId``, so that A's send
flusher has batches being published and confirmed the whole time; a watcher per room listens on
node B. Node A is SIGKILLed (its whole process group, by pid) in the middle of the load. Then:

1. every send A acked ``accepted`` is stored and charged exactly once, with no help from anyone;
2. a send that got no ack may or may not have been applied, but never twice;
3. the clients resend every unanswered send, with the same ``clientMessageId``, through node B: each
   ends up stored exactly once, every user's charge is what ``domain.credits.charge_words`` gives for
   exactly their stored messages, and the watchers on B saw each stored message (with its ``seq``),
   a message twice only when a resend replayed a send that had already been applied.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import socketio

from domain.credits import Balance, Blocked, CreditPolicy, charge_words
from schemas.commands import send_command_ids
from schemas.queues import CHAT_QUEUE, SEND_BATCH_ACTOR, capability_of
from tests.support import isolation
from tests.support.admin_api import grant
from tests.support.amqp import queue_counts
from tests.support.clients import ChatClient
from tests.support.ids import uid
from tests.support.json_logs import having, json_lines
from tests.support.processes import Proc, Processes
from tests.support.stacks import OneNode
from tests.support.waiting import wait_until

ROOMS = 6
MEMBERS = 5  # senders per room, all on node A
IN_FLIGHT = 4  # sends each sender keeps unanswered
MAX_SENDS = 100  # per sender; the kill comes long before the last
GRANTED = 100  # credits per sender: more than MAX_SENDS messages of under 1000 words can cost
KILL_AFTER_ACKS = 900  # acked sends (of 3000) before node A is killed


def words_of(n: int) -> int:
    """150 to 949 words: messages open credits at varying points."""
    return 150 + (n * 137) % 800


@dataclass
class Send:
    user_id: str
    room: str
    client_message_id: str
    words: int
    ack: dict[str, Any] | None = None

    @property
    def command_id(self) -> str:
        return send_command_ids(self.user_id, self.client_message_id)[0]

    @property
    def message_id(self) -> str:
        return send_command_ids(self.user_id, self.client_message_id)[1]

    @property
    def accepted(self) -> bool:
        return self.ack is not None and self.ack.get("status") == "accepted"

    def payload(self) -> dict[str, Any]:
        return {"roomId": self.room, "message": "w " * self.words, "clientMessageId": self.client_message_id}


class Load:
    """Each sender keeps ``IN_FLIGHT`` sends unanswered until it has emitted ``MAX_SENDS``."""

    def __init__(self) -> None:
        self.sends: list[Send] = []
        self.acked = 0
        self.enough = asyncio.Event()

    async def run(self, client: ChatClient, room: str) -> None:
        slots = asyncio.Semaphore(IN_FLIGHT)
        for n in range(MAX_SENDS):
            await slots.acquire()
            send = Send(client.user_id, room, f"c{n}", words_of(n))
            self.sends.append(send)  # before the emit: a send cut short by the kill counts as unanswered

            def answered(ack: dict[str, Any], send: Send = send) -> None:
                send.ack = ack
                slots.release()
                self.acked += 1
                if self.acked >= KILL_AFTER_ACKS:
                    self.enough.set()

            try:
                await client.sio.emit("sendMessage", send.payload(), callback=answered)
            except socketio.exceptions.SocketIOError:
                return  # the node is gone


@pytest.fixture
def two_nodes(iso, stack_env) -> Iterator[tuple[Proc, Proc, str]]:
    """Nodes A and B and a chat pool, in a vhost no other test's processes consume."""
    vhost = f"{iso.vhost}_ikill"
    isolation.create_vhost(vhost)
    procs = Processes({**stack_env, "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}", "RATE_LIMITS": "1000/1s"})
    try:
        a, b = procs.ingress(), procs.ingress()
        procs.workers("chat", processes=1, threads=4)
        yield a, b, vhost
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


async def stored(ledger, sends: list[Send]) -> Counter[str]:
    """message_id -> rows in ``messages``, for the sends given."""
    rows = await ledger.fetch(
        "SELECT message_id::text AS id, count(*) AS n FROM messages WHERE message_id = ANY($1::uuid[]) GROUP BY 1",
        [uuid.UUID(s.message_id) for s in sends],
    )
    return Counter({r["id"]: r["n"] for r in rows})


async def wait_stored(ledger, sends: list[Send], timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while (found := len(await stored(ledger, sends))) < len(sends) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert found == len(sends), f"{len(sends) - found} of {len(sends)} sends not stored after {timeout}s"


async def drained(vhost: str) -> None:
    await wait_until(lambda: asyncio.to_thread(queue_counts, vhost, CHAT_QUEUE), (0, 0), timeout=40)


async def test_kill_minus_9_of_an_ingress_node_under_load_loses_and_doubles_nothing(two_nodes, http, clients, ledger):
    node_a, node_b, vhost = two_nodes
    rooms = {uid("room"): [ChatClient(uid(f"k{r}m{m}")) for m in range(MEMBERS)] for r in range(ROOMS)}
    senders = [(room, client) for room, members in rooms.items() for client in members]
    watchers = {room: ChatClient(uid("watch")) for room in rooms}
    clients.extend([c for _, c in senders] + list(watchers.values()))
    await asyncio.gather(*(grant(http, OneNode(node_b.port), c.user_id, GRANTED, "g") for _, c in senders))
    await asyncio.gather(*(w.connect(node_b.port) for w in watchers.values()))
    await asyncio.gather(*(w.join(room) for room, w in watchers.items()))
    await asyncio.gather(*(c.connect(node_a.port) for _, c in senders))
    await asyncio.gather(*(c.join(room) for room, c in senders))

    # The load, and node A killed in the middle of it.
    load = Load()
    started = time.monotonic()
    tasks = [asyncio.create_task(load.run(client, room)) for room, client in senders]
    await asyncio.wait_for(load.enough.wait(), timeout=30)
    acked_at_kill = sum(1 for s in load.sends if s.ack is not None)
    outstanding_at_kill = len(load.sends) - acked_at_kill
    node_a.kill9()  # SIGKILL, synchronously: no ack is read between the count above and the kill
    killed_after = time.monotonic() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    deadline = time.monotonic() + 15
    while any(c.sio.connected for _, c in senders) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not any(c.sio.connected for _, c in senders), "the senders did not notice node A's death"

    sends = load.sends
    accepted = [s for s in sends if s.accepted]
    unanswered = [s for s in sends if not s.accepted]
    statuses = Counter(s.ack["status"] if s.ack else "no ack" for s in sends)
    assert acked_at_kill > 0 and outstanding_at_kill > 0, (acked_at_kill, outstanding_at_kill)
    assert unanswered, "every send was answered: the kill did not land mid-load"
    assert len(sends) < len(senders) * MAX_SENDS, "the load had ended before the kill"
    assert all(s.ack["messageId"] == s.message_id for s in accepted)
    lines = having(json_lines(node_a), event="command.published")
    published = [line for line in lines if capability_of(line["queue"]) == CHAT_QUEUE]
    batches = [line for line in published if line["actor"] == SEND_BATCH_ACTOR]
    assert batches, "node A published no batch: its flusher never had sends waiting"
    confirmed = {c for line in batches for c in line["command_ids"]} | {line["command_id"] for line in published}
    confirmed_unanswered = [s for s in unanswered if s.command_id in confirmed]

    # 1. Every accepted send is stored exactly once, without any resend; 2. none is stored twice.
    await wait_stored(ledger, accepted)
    await drained(vhost)  # whatever A published before it died has now been applied
    after_kill = await stored(ledger, sends)
    assert all(n == 1 for n in after_kill.values()), [i for i, n in after_kill.items() if n > 1]
    assert all(after_kill[s.message_id] == 1 for s in accepted)
    applied_unanswered = [s for s in unanswered if s.message_id in after_kill]
    # What RabbitMQ confirmed to A is applied though A died before it could answer.
    assert all(after_kill[s.message_id] == 1 for s in confirmed_unanswered)
    inbox = await ledger.fetch(
        "SELECT command_id, status FROM inbox WHERE command_id = ANY($1)", [s.command_id for s in sends]
    )
    by_command = {r["command_id"]: r["status"] for r in inbox}
    assert all(by_command.get(s.command_id) == "applied" for s in accepted)
    assert {s.command_id for s in sends if by_command.get(s.command_id) == "applied"} == {
        s.command_id for s in sends if s.message_id in after_kill
    }

    # 3. Each unanswered send resent through B with the same clientMessageId: accepted, stored once.
    again = {c.user_id: ChatClient(c.user_id) for _, c in senders}
    clients.extend(again.values())
    await asyncio.gather(*(c.connect(node_b.port) for c in again.values()))
    await asyncio.gather(*(again[c.user_id].join(room) for room, c in senders))
    resent = await asyncio.gather(
        *(again[s.user_id].sio.call("sendMessage", s.payload(), timeout=20) for s in unanswered)
    )
    assert [a["status"] for a in resent] == ["accepted"] * len(unanswered), Counter(a["status"] for a in resent)
    assert [a["messageId"] for a in resent] == [s.message_id for s in unanswered]
    await wait_stored(ledger, sends)
    await drained(vhost)

    # Stored: exactly the sends made, each once, numbered 1..n in its room.
    rows = await ledger.fetch(
        "SELECT message_id::text AS id, room_id, user_id, words, room_seq FROM messages WHERE room_id = ANY($1)"
        " ORDER BY seq",
        list(rooms),
    )
    assert Counter(r["id"] for r in rows) == Counter(s.message_id for s in sends)
    expected = {s.message_id: s for s in sends}
    for r in rows:
        send = expected[r["id"]]
        assert (r["user_id"], r["room_id"], r["words"]) == (send.user_id, send.room, send.words)
    for room in rooms:
        seqs = sorted(r["room_seq"] for r in rows if r["room_id"] == room)
        assert seqs == list(range(1, len(seqs) + 1)), room
    statuses_now = await ledger.fetch(
        "SELECT status, count(*) AS n FROM inbox WHERE command_id = ANY($1) GROUP BY 1", [s.command_id for s in sends]
    )
    assert {r["status"]: r["n"] for r in statuses_now} == {"applied": len(sends)}

    # Charged: for each user, what the credit rules give for exactly their stored messages, in order.
    policy, now = CreditPolicy(), time.time()
    for _, client in senders:
        balance, charged, words, charging = Balance(credits=GRANTED), 0, 0, 0
        for r in rows:
            if r["user_id"] == client.user_id:
                outcome = charge_words(balance, r["words"], now, policy)
                assert not isinstance(outcome, Blocked)
                balance, charged, words = outcome.balance, charged + outcome.credits_charged, words + r["words"]
                charging += outcome.credits_charged > 0
        account = await ledger.fetchrow(
            "SELECT credits, words_left, credits_charged_total, words_used_total FROM accounts WHERE account_id = $1",
            f"user:{client.user_id}",
        )
        assert tuple(account) == (balance.credits, balance.words_left, charged, words), client.user_id
        charges = await ledger.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'charge' AND reference = ANY($1)",
            [s.command_id for s in sends if s.user_id == client.user_id],
        )
        assert charges == charging, client.user_id  # one ledger charge per message that opened a credit

    # Delivered: each watcher on B saw every message of its room, with its stored seq; a message twice
    # only when a resend replayed a send that was already applied (clients dedupe on messageId).
    seq_of = {r["id"]: r["room_seq"] for r in rows}
    replayed = {s.message_id for s in applied_unanswered}
    for room, watcher in watchers.items():
        want = {s.message_id for s in sends if s.room == room}
        deadline = time.monotonic() + 30
        while not want <= {m["messageId"] for m in watcher.events["newMessage"]} and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        got = Counter(m["messageId"] for m in watcher.events["newMessage"])
        assert set(got) == want, (room, len(want - set(got)), len(set(got) - want))
        assert all(m["seq"] == seq_of[m["messageId"]] for m in watcher.events["newMessage"])
        assert {i for i, n in got.items() if n > 1} <= replayed, room
    print(
        f"killed node A {killed_after:.1f}s into the load with {acked_at_kill} sends acked and"
        f" {outstanding_at_kill} outstanding ({len(batches)} batches published by A, {len(confirmed_unanswered)}"
        f" sends confirmed by RabbitMQ but never acked); {len(sends)} sends: {dict(statuses)};"
        f" {len(applied_unanswered)} of {len(unanswered)} unanswered were applied before the resend;"
        f" all {len(sends)} stored once"
    )
