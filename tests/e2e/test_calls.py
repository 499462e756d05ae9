"""Call signaling across two ingress nodes and per-minute call billing, against real processes.

The module runs its own small stack (two ingress nodes and a billing worker, in their own
database, vhost and key prefix) so the billing minute, the heartbeat timeout and the sweep
interval can be short without touching any other test's workers.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from domain.calls import minutes_started
from infra import db
from infra import grants as grants_repo
from schemas.calls import CallMeter
from schemas.queues import BILLING_QUEUE, CALL_METER_ACTOR
from tests.support import isolation
from tests.support.amqp import publish_commands
from tests.support.clients import ChatClient
from tests.support.ledger_checks import assert_ledger_invariants
from tests.support.processes import Proc, Processes

PRICE, FEE_PCT = 10, 25  # fee floor(2.5) = 2, callee 8
MINUTE_S = 1.0
HEARTBEAT_TIMEOUT_S = 5.0
HEARTBEAT_INTERVAL_S = 0.2  # at most one heartbeat per call reaches billing this often
GRACE_S = 3.0  # a call ends once a party has been disconnected this long
SWEEP_S = 0.3
SIGNALS_PER_S = 20


@dataclass
class CallStack:
    iso: isolation.Isolation
    processes: Processes
    nodes: list[Proc]
    billing: Proc

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]


@pytest.fixture(scope="module")
def call_stack() -> Iterator[CallStack]:
    iso = isolation.new_isolation()
    isolation.create_vhost(iso.vhost)
    asyncio.run(db.migrate(iso.database_url))
    procs = Processes(
        iso.env(
            RATE_LIMITS="200/1s",
            CALL_PRICE_PER_MINUTE=str(PRICE),
            PLATFORM_FEE_PCT=str(FEE_PCT),
            CALL_MINUTE_S=str(MINUTE_S),
            CALL_HEARTBEAT_TIMEOUT_S=str(HEARTBEAT_TIMEOUT_S),
            CALL_SWEEP_INTERVAL_S=str(SWEEP_S),
            CALL_SIGNAL_MAX_BYTES="2048",
            CALL_HEARTBEAT_MIN_INTERVAL_S=str(HEARTBEAT_INTERVAL_S),
            CALL_DISCONNECT_GRACE_S=str(GRACE_S),
            CALL_SIGNAL_LIMITS=f"{SIGNALS_PER_S}/1s",
        )
    )
    try:
        nodes = [procs.ingress(), procs.ingress()]
        billing = procs.workers("billing", processes=1, threads=8)
        yield CallStack(iso, procs, nodes, billing)
    finally:
        procs.stop_all()
        if not os.environ.get("KEEP_TEST_DATA"):
            isolation.delete_vhost(iso.vhost)
            asyncio.run(isolation.drop_database(iso.database))
            isolation.delete_redis_keys(iso.key_prefix)


@pytest.fixture
async def ledger(call_stack: CallStack) -> AsyncIterator[asyncpg.Pool]:
    """This module's database; the ledger invariants are checked after every test (as everywhere)."""
    pool = await db.create_pool(call_stack.iso.database_url, max_size=5)
    try:
        yield pool
        async with pool.acquire() as conn:
            await assert_ledger_invariants(conn)
    finally:
        await pool.close()


def uid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


async def connect(clients: list[ChatClient], user: str, port: int) -> ChatClient:
    client = ChatClient(user, name=user.title())
    clients.append(client)
    return await client.connect(port)


async def two_parties(
    call_stack: CallStack, ledger: asyncpg.Pool, clients: list[ChatClient]
) -> tuple[str, str, ChatClient, ChatClient, str]:
    """Alice (1000 credits) on node 0, Bob on node 1, and a fresh call id: most calls' cast."""
    alice_id, bob_id = uid("alice"), uid("bob")
    await grants_repo.grant(ledger, f"user:{alice_id}", 1000, "test", "k")
    alice = await connect(clients, alice_id, call_stack.ports[0])
    bob = await connect(clients, bob_id, call_stack.ports[1])
    return alice_id, bob_id, alice, bob, uid("call")


async def credits(pool: asyncpg.Pool, user: str) -> int:
    return await pool.fetchval("SELECT coalesce(max(credits), 0) FROM accounts WHERE account_id = $1", f"user:{user}")


async def revenue(pool: asyncpg.Pool) -> int:
    return await pool.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM ledger_postings WHERE account_id = 'system:revenue'"
    )


async def call_row(pool: asyncpg.Pool, call_id: str):
    return await pool.fetchrow("SELECT * FROM calls WHERE call_id = $1", call_id)


async def call(client: ChatClient, event: str, payload: dict) -> dict:
    return await client.sio.call(event, payload, timeout=10)


def by_call(call_id: str):
    return lambda d: d.get("callId") == call_id


async def test_signaling_between_users_on_different_nodes(call_stack, ledger, clients):
    alice_id, bob_id, carol_id = uid("alice"), uid("bob"), uid("carol")
    await grants_repo.grant(ledger, f"user:{alice_id}", 100, "test", "k")
    alice = await connect(clients, alice_id, call_stack.ports[0])
    bob = await connect(clients, bob_id, call_stack.ports[1])
    carol = await connect(clients, carol_id, call_stack.ports[0])
    call_id = uid("call")
    revenue_before = await revenue(ledger)

    assert await call(alice, "initiate-call", {"callId": call_id, "calleeId": bob_id}) == {
        "status": "accepted",
        "callId": call_id,
    }
    incoming = await bob.wait_for("incoming-call", by_call(call_id))
    assert (incoming["callerId"], incoming["callerName"], incoming["from"]) == (alice_id, alice.name, alice_id)

    # Only the callee may answer; nobody else may signal on the call.
    denied = await call(carol, "accept-call", {"callId": call_id})
    assert denied["status"] == "rejected" and denied["error"]["code"] == "forbidden"
    denied = await call(carol, "signal", {"callId": call_id, "data": {"type": "offer", "sdp": "x"}})
    assert denied["status"] == "rejected" and denied["error"]["code"] == "forbidden"
    denied = await call(alice, "accept-call", {"callId": call_id})
    assert denied["status"] == "rejected" and denied["error"]["code"] == "forbidden"

    assert (await call(bob, "accept-call", {"callId": call_id}))["status"] == "accepted"
    await alice.wait_for("accept-call", by_call(call_id))
    started = await alice.wait_for("callStarted", by_call(call_id))
    await bob.wait_for("callStarted", by_call(call_id))
    assert (started["callerId"], started["calleeId"], started["pricePerMinute"]) == (alice_id, bob_id, PRICE)

    offer = {"type": "offer", "sdp": "v=0 o=alice"}
    assert (await call(alice, "signal", {"callId": call_id, "data": offer}))["status"] == "accepted"
    relayed = await bob.wait_for("signal", by_call(call_id))
    assert (relayed["from"], relayed["data"]) == (alice_id, offer)
    assert (await call(bob, "signal", {"callId": call_id, "data": "candidate:1 1 udp"}))["status"] == "accepted"
    relayed = await alice.wait_for("signal", by_call(call_id))
    assert (relayed["from"], relayed["data"]) == (bob_id, "candidate:1 1 udp")
    assert await call(alice, "callHeartbeat", {"callId": call_id}) == {"status": "accepted", "callId": call_id}

    too_big = await call(alice, "signal", {"callId": call_id, "data": {"sdp": "x" * 3000}})
    assert too_big["status"] == "rejected" and too_big["error"]["code"] == "bad_request"
    unknown = await call(alice, "signal", {"callId": uid("nope"), "data": "x"})
    assert unknown["status"] == "rejected" and unknown["error"]["code"] == "unknown_call"
    malformed = await call(alice, "signal", {"callId": call_id})
    assert malformed["status"] == "rejected" and malformed["error"]["code"] == "bad_request"

    assert (await call(bob, "end-call", {"callId": call_id}))["status"] == "accepted"
    await alice.wait_for("end-call", by_call(call_id))
    ended = await alice.wait_for("callEnded", by_call(call_id))
    assert ended == await bob.wait_for("callEnded", by_call(call_id))
    assert ended["reason"] == "hangup"

    row = await call_row(ledger, call_id)
    minutes = minutes_started(row["started_ms"], row["ended_ms"], row["minute_ms"])
    assert (row["minutes_charged"], ended["minutesCharged"], ended["creditsCharged"]) == (
        minutes,
        minutes,
        minutes * PRICE,
    )
    assert await credits(ledger, alice_id) == 100 - minutes * PRICE
    assert await credits(ledger, bob_id) == minutes * 8
    assert await revenue(ledger) - revenue_before == minutes * 2
    # Carol saw none of it; the call is over for signaling too.
    assert not carol.events["signal"] and not carol.events["incoming-call"]
    gone = await call(alice, "signal", {"callId": call_id, "data": "late"})
    assert gone["status"] == "rejected" and gone["error"]["code"] == "unknown_call"


async def test_reject_and_cancel_reach_the_other_side(call_stack, ledger, clients):
    alice_id, bob_id = uid("alice"), uid("bob")
    alice = await connect(clients, alice_id, call_stack.ports[1])
    bob = await connect(clients, bob_id, call_stack.ports[0])
    rejected_call, cancelled_call = uid("call"), uid("call")
    await call(alice, "initiate-call", {"callId": rejected_call, "calleeId": bob_id})
    await bob.wait_for("incoming-call", by_call(rejected_call))
    assert (await call(bob, "reject-call", {"callId": rejected_call}))["status"] == "accepted"
    assert (await alice.wait_for("reject-call", by_call(rejected_call)))["userId"] == bob_id

    await call(alice, "initiate-call", {"callId": cancelled_call, "calleeId": bob_id})
    await bob.wait_for("incoming-call", by_call(cancelled_call))
    assert (await call(alice, "end-call", {"callId": cancelled_call}))["status"] == "accepted"
    assert (await bob.wait_for("end-call", by_call(cancelled_call)))["userId"] == alice_id
    # Neither call was ever billed.
    assert await call_row(ledger, rejected_call) is None and await call_row(ledger, cancelled_call) is None
    self_call = await call(alice, "initiate-call", {"callId": uid("call"), "calleeId": alice_id})
    assert self_call["status"] == "rejected" and self_call["error"]["code"] == "bad_request"
    bad_id = await call(alice, "initiate-call", {"callId": "no spaces!", "calleeId": bob_id})
    assert bad_id["status"] == "rejected" and bad_id["error"]["code"] == "bad_request"


async def test_an_offline_callee_gets_the_caller_call_unavailable(call_stack, ledger, clients):
    alice = await connect(clients, uid("alice"), call_stack.ports[0])
    gone_id = uid("gone")
    gone = await connect(clients, gone_id, call_stack.ports[1])
    await gone.close()
    for callee in (gone_id, uid("never")):
        deadline = time.monotonic() + 5  # the node forgets a socket once it has handled its disconnect
        while True:
            call_id = uid("call")
            ack = await call(alice, "initiate-call", {"callId": call_id, "calleeId": callee})
            if ack["status"] != "accepted" or time.monotonic() > deadline:
                break
            await call(alice, "end-call", {"callId": call_id})  # rang a socket on its way out: hang up
            await asyncio.sleep(0.2)
        # An offline user and one that never existed get the same answer.
        assert ack == {"status": "unavailable", "callId": call_id, "calleeId": callee}
        notice = await alice.wait_for("call-unavailable", by_call(call_id))
        assert (notice["userId"], notice["reason"]) == (callee, "offline")
    # Without an ack callback, errors still arrive as an ``error`` event and the socket stays up.
    await alice.sio.emit("accept-call", {"callId": uid("nope")})
    error = await alice.wait_for("error", lambda e: e.get("event") == "accept-call")
    assert error["code"] == "unknown_call"
    assert alice.sio.connected


async def beat_until(client: ChatClient, call_id: str, done, interval: float = 0.25, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the call did not end in time"
        await client.sio.emit("callHeartbeat", {"callId": call_id})
        await asyncio.sleep(interval)


async def test_direct_meter_bills_every_started_minute_with_an_exact_fee(call_stack, ledger, clients):
    alice_id, bob_id, alice, bob, call_id = await two_parties(call_stack, ledger, clients)
    revenue_before = await revenue(ledger)
    assert await call(alice, "callStart", {"callId": call_id, "calleeId": bob_id}) == {
        "status": "accepted",
        "callId": call_id,
    }
    await bob.wait_for("callStarted", by_call(call_id))
    end_after = time.monotonic() + 2.5 * MINUTE_S
    await beat_until(alice, call_id, lambda: time.monotonic() > end_after)
    await call(bob, "callEnd", {"callId": call_id})  # either party may hang up
    ended = await alice.wait_for("callEnded", by_call(call_id))
    assert ended["reason"] == "hangup"

    row = await call_row(ledger, call_id)
    minutes = minutes_started(row["started_ms"], row["ended_ms"], row["minute_ms"])
    assert minutes >= 3 and row["minutes_charged"] == minutes == ended["minutesCharged"]
    assert await credits(ledger, alice_id) == 1000 - minutes * PRICE
    assert await credits(ledger, bob_id) == minutes * 8
    assert await revenue(ledger) - revenue_before == minutes * 2
    kinds = await ledger.fetch(
        "SELECT kind, count(*) AS n, sum(p.amount) AS total FROM ledger_transactions t JOIN ledger_postings p"
        " USING (txn_id) WHERE t.reference LIKE $1 AND p.amount > 0 GROUP BY kind ORDER BY kind",
        f"{call_id}:%",
    )
    assert [tuple(r) for r in kinds] == [("call", minutes, minutes * 8), ("call_fee", minutes, minutes * 2)]


async def test_insufficient_credits_end_the_call_for_both(call_stack, ledger, clients):
    alice_id, bob_id = uid("alice"), uid("bob")
    await grants_repo.grant(ledger, f"user:{alice_id}", 2 * PRICE + 5, "test", "k")
    alice = await connect(clients, alice_id, call_stack.ports[1])
    bob = await connect(clients, bob_id, call_stack.ports[0])
    call_id = uid("call")
    await call(alice, "initiate-call", {"callId": call_id, "calleeId": bob_id})
    await bob.wait_for("incoming-call", by_call(call_id))
    await call(bob, "accept-call", {"callId": call_id})
    await alice.wait_for("callStarted", by_call(call_id))
    await beat_until(alice, call_id, lambda: bool(alice.events["callEnded"]))  # the caller's beats: they pay
    for side in (alice, bob):
        ended = await side.wait_for("callEnded", by_call(call_id))
        assert (ended["reason"], ended["minutesCharged"], ended["creditsCharged"]) == (
            "insufficient_credits",
            2,
            2 * PRICE,
        )
        assert ended["endedAt"] == ended["startedAt"] + 2 * round(MINUTE_S * 1000)  # where the paid time ran out
    assert await credits(ledger, alice_id) == 5
    assert await credits(ledger, bob_id) == 16
    # Billing ended it, so signaling on it is over too.
    deadline = time.monotonic() + 5
    while (ack := await call(alice, "signal", {"callId": call_id, "data": "x"}))["status"] == "accepted":
        assert time.monotonic() < deadline, "signaling outlived the billed call"
        await asyncio.sleep(0.1)
    assert ack["error"]["code"] == "unknown_call"


async def test_a_call_whose_heartbeats_stop_is_ended_and_billed_to_the_last_one(call_stack, ledger, clients):
    alice_id, bob_id, alice, bob, call_id = await two_parties(call_stack, ledger, clients)
    await call(alice, "callStart", {"callId": call_id, "calleeId": bob_id})
    await alice.wait_for("callStarted", by_call(call_id))
    stop_at = time.monotonic() + 1.5 * MINUTE_S
    await beat_until(alice, call_id, lambda: time.monotonic() > stop_at)
    silent_since = time.monotonic()
    ended = await bob.wait_for("callEnded", by_call(call_id), timeout=HEARTBEAT_TIMEOUT_S + 15)
    assert time.monotonic() - silent_since >= HEARTBEAT_TIMEOUT_S - 1  # not before the timeout
    assert ended == await alice.wait_for("callEnded", by_call(call_id))
    row = await call_row(ledger, call_id)
    minutes = minutes_started(row["started_ms"], row["last_seen_ms"], row["minute_ms"])
    assert (ended["reason"], ended["endedAt"], ended["minutesCharged"]) == ("timeout", row["last_seen_ms"], minutes)
    assert row["last_seen_ms"] > row["started_ms"]  # the heartbeats counted
    assert await credits(ledger, alice_id) == 1000 - minutes * PRICE


async def test_a_redelivered_meter_command_charges_once(call_stack, ledger, clients):
    alice_id, bob_id, alice, _, call_id = await two_parties(call_stack, ledger, clients)  # Bob online throughout
    await call(alice, "callStart", {"callId": call_id, "calleeId": bob_id})
    await alice.wait_for("callStarted", by_call(call_id))
    row = await call_row(ledger, call_id)
    minute_ms = row["minute_ms"]
    at = row["started_ms"] + 5 * minute_ms  # six minutes started
    beat = CallMeter(
        command_id=str(uuid.uuid4()),
        action="heartbeat",
        call_id=call_id,
        sender_id=alice_id,
        at_ms=at,
        event="callHeartbeat",
    )
    again = beat.model_copy(update={"command_id": str(uuid.uuid4())})  # another heartbeat for the same minutes
    end = CallMeter(
        command_id=str(uuid.uuid4()), action="end", call_id=call_id, sender_id=alice_id, at_ms=at + 1, event="callEnd"
    )
    await publish_commands(call_stack.iso.amqp_url, BILLING_QUEUE, CALL_METER_ACTOR, [beat] * 5 + [again] + [end] * 3)
    ended = await alice.wait_for("callEnded", by_call(call_id))
    assert (ended["reason"], ended["minutesCharged"], ended["endedAt"]) == ("hangup", 6, at + 1)
    await asyncio.sleep(1.0)  # let every duplicate drain
    assert await credits(ledger, alice_id) == 1000 - 6 * PRICE
    applied = await ledger.fetchval(
        "SELECT count(*) FROM inbox WHERE command_id = ANY($1::text[])",
        [beat.command_id, again.command_id, end.command_id],
    )
    assert applied == 3  # one inbox row per command, however often it was delivered
    assert (
        await ledger.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'call' AND reference LIKE $1", f"{call_id}:%"
        )
        == 6
    )


# --- issue 12: bounded call events, and a party who drops off stops the meter -----------------------


def rate_limited(ack: dict) -> bool:
    return ack["status"] == "rejected" and ack["error"]["code"] == "rate_limited" and ack["retryAfterMs"] > 0


async def meter_commands(pool: asyncpg.Pool, call_id: str) -> int:
    """How many call meter commands billing applied for ``call_id``."""
    return await pool.fetchval(
        "SELECT count(*) FROM inbox WHERE kind = 'billing.call_meter' AND result->>'call' = $1", call_id
    )


async def test_a_caller_cannot_ring_a_victim_over_and_over(call_stack, ledger, clients):
    """Finding: 300 initiate-call rang one victim 300 times."""
    mallory = await connect(clients, uid("mallory"), call_stack.ports[0])
    victim_id = uid("victim")
    victim = await connect(clients, victim_id, call_stack.ports[1])
    acks = [await call(mallory, "initiate-call", {"callId": uid("call"), "calleeId": victim_id}) for _ in range(300)]
    assert acks[0]["status"] == "accepted"
    assert all(rate_limited(a) for a in acks[1:]), [a for a in acks[1:] if not rate_limited(a)][:3]
    await asyncio.sleep(0.5)  # room for a stray ring to arrive
    assert len(victim.events["incoming-call"]) == 1
    # Rings to one callee are bounded whoever rings: CALL_CALLEE_RING_LIMITS (10 a minute) in all.
    callers = [await connect(clients, uid("caller"), call_stack.ports[i % 2]) for i in range(10)]
    rung = [await call(c, "initiate-call", {"callId": uid("call"), "calleeId": victim_id}) for c in callers]
    assert [a["status"] for a in rung[:9]] == ["accepted"] * 9 and rate_limited(rung[9]), rung[9]
    assert "called too often" in rung[9]["error"]["message"]
    # Probing who is online costs the same: the caller's own limit, offline or unknown callee alike.
    prober = await connect(clients, uid("prober"), call_stack.ports[0])
    probes = [await call(prober, "initiate-call", {"callId": uid("call"), "calleeId": uid("nobody")}) for _ in range(8)]
    assert [a["status"] for a in probes[:6]] == ["unavailable"] * 6 and all(rate_limited(a) for a in probes[6:])


async def test_a_signal_flood_is_rate_limited_per_socket(call_stack, ledger, clients):
    """Every socket event is bounded: signal relays too (CALL_SIGNAL_LIMITS)."""
    alice_id, bob_id = uid("alice"), uid("bob")
    alice = await connect(clients, alice_id, call_stack.ports[0])
    bob = await connect(clients, bob_id, call_stack.ports[1])
    call_id = uid("call")
    assert (await call(alice, "initiate-call", {"callId": call_id, "calleeId": bob_id}))["status"] == "accepted"
    started = time.monotonic()
    acks = [await call(alice, "signal", {"callId": call_id, "data": f"candidate:{i}"}) for i in range(200)]
    elapsed = time.monotonic() - started
    accepted = [a for a in acks if a["status"] == "accepted"]
    assert all(rate_limited(a) for a in acks if a["status"] != "accepted")
    # At most one window's worth per elapsed second (plus the first window) went through.
    assert SIGNALS_PER_S <= len(accepted) <= SIGNALS_PER_S * (int(elapsed) + 1), (len(accepted), elapsed)
    await bob.wait_count("signal", len(accepted), by_call(call_id))
    await asyncio.sleep(0.3)
    assert len(bob.events["signal"]) == len(accepted)
    # Bob's own socket has its own budget.
    assert (await call(bob, "signal", {"callId": call_id, "data": "answer"}))["status"] == "accepted"


async def test_heartbeats_are_the_payers_and_coalesced_and_a_call_has_one_meter(call_stack, ledger, clients):
    """Finding: 1,000 callHeartbeat became 1,000 billing commands."""
    _, bob_id, alice, bob, call_id = await two_parties(call_stack, ledger, clients)
    assert (await call(alice, "callStart", {"callId": call_id, "calleeId": bob_id}))["status"] == "accepted"
    await bob.wait_for("callStarted", by_call(call_id))
    again = [await call(alice, "callStart", {"callId": call_id, "calleeId": bob_id}) for _ in range(20)]
    assert all(a == {"status": "accepted", "callId": call_id} for a in again)  # the same call: nothing new
    started = time.monotonic()
    beats = await asyncio.gather(*(call(alice, "callHeartbeat", {"callId": call_id}) for _ in range(1000)))
    elapsed = time.monotonic() - started
    assert all(b == {"status": "accepted", "callId": call_id} for b in beats)
    deadline = time.monotonic() + 10  # until billing has drained what it was sent
    while (commands := await meter_commands(ledger, call_id)) < 2 or time.monotonic() < started + elapsed + 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    allowed = 1 + int(elapsed / HEARTBEAT_INTERVAL_S) + 1  # the start, then one beat per interval
    print(f"1000 heartbeats in {elapsed:.2f}s became {commands - 1} meter commands")
    assert commands <= allowed, (commands, elapsed)
    assert len(bob.events["callStarted"]) == 1  # twenty-one callStart, one meter
    # The callee's heartbeats never keep the caller's meter running.
    denied = await call(bob, "callHeartbeat", {"callId": call_id})
    assert denied["status"] == "rejected" and denied["error"]["code"] == "forbidden", denied
    assert (await call(bob, "callEnd", {"callId": call_id}))["status"] == "accepted"
    await alice.wait_for("callEnded", by_call(call_id))


async def test_a_caller_who_drops_off_stops_paying_though_the_callee_keeps_beating(call_stack, ledger, clients):
    """Finding: the callee's callHeartbeat kept a disconnected caller's meter running until they were at 0."""
    alice_id, bob_id, alice, bob, call_id = await two_parties(call_stack, ledger, clients)
    await call(alice, "initiate-call", {"callId": call_id, "calleeId": bob_id})
    await bob.wait_for("incoming-call", by_call(call_id))
    await call(bob, "accept-call", {"callId": call_id})
    await alice.wait_for("callStarted", by_call(call_id))
    stop_at = time.monotonic() + 1.2 * MINUTE_S
    await beat_until(alice, call_id, lambda: time.monotonic() > stop_at)
    before_ms = int(time.time() * 1000)
    await alice.close()  # gone, without hanging up
    after_ms = int(time.time() * 1000)
    dropped = time.monotonic()
    # Bob keeps beating; the call still ends once Alice has been gone for the grace period.
    await beat_until(bob, call_id, lambda: bool(bob.events["callEnded"]), interval=0.1, timeout=GRACE_S + SWEEP_S + 10)
    waited = time.monotonic() - dropped
    ended = await bob.wait_for("callEnded", by_call(call_id))
    assert waited >= GRACE_S - 0.5, waited
    assert ended["reason"] == "disconnected"
    assert before_ms <= ended["endedAt"] <= after_ms + 1000, (before_ms, ended["endedAt"], after_ms)
    row = await call_row(ledger, call_id)
    minutes = minutes_started(row["started_ms"], ended["endedAt"], row["minute_ms"])
    assert (row["minutes_charged"], ended["minutesCharged"], ended["creditsCharged"]) == (
        minutes,
        minutes,
        minutes * PRICE,
    )
    assert await credits(ledger, alice_id) == 1000 - minutes * PRICE  # exact to the credit
    assert await credits(ledger, bob_id) == minutes * 8
    print(f"caller dropped; call ended {waited:.1f}s later, {minutes} minutes charged")


async def test_a_callee_who_drops_off_ends_the_call_for_the_caller(call_stack, ledger, clients):
    alice_id, bob_id, alice, bob, call_id = await two_parties(call_stack, ledger, clients)
    await call(alice, "callStart", {"callId": call_id, "calleeId": bob_id})
    await bob.wait_for("callStarted", by_call(call_id))
    before_ms = int(time.time() * 1000)
    await bob.close()
    # Alice's heartbeats keep paying during the grace period, and no longer.
    await beat_until(alice, call_id, lambda: bool(alice.events["callEnded"]), timeout=GRACE_S + SWEEP_S + 10)
    ended = await alice.wait_for("callEnded", by_call(call_id))
    assert ended["reason"] == "disconnected" and ended["endedAt"] >= before_ms
    row = await call_row(ledger, call_id)
    most = minutes_started(
        row["started_ms"], ended["endedAt"] + round((GRACE_S + 2 * SWEEP_S + 1) * 1000), row["minute_ms"]
    )
    assert row["minutes_charged"] <= most
    assert await credits(ledger, alice_id) == 1000 - row["minutes_charged"] * PRICE
