"""Tips over Socket.IO through the real stack: ingress nodes, RabbitMQ, a billing worker, PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from schemas.queues import BILLING_QUEUE, SEND_TIP_ACTOR
from schemas.tips import SendTipCommand, tip_ids
from tests.support.admin_api import grant, stats
from tests.support.amqp import publish_commands
from tests.support.clients import ChatClient, connected, make_token, send_tip
from tests.support.ids import uid
from tests.support.processes import Proc
from tests.support.stacks import Stack, start_billing_worker


@pytest.fixture(scope="module")
def billing_worker(stack: Stack) -> Iterator[Proc]:
    yield from start_billing_worker(stack)


async def tip_count(pool, command_id: str) -> int:
    return await pool.fetchval(
        "SELECT count(*) FROM ledger_transactions WHERE kind = 'tip' AND reference = $1", command_id
    )


async def test_a_tip_reaches_the_recipient_and_the_room_and_moves_credits_once(
    stack, billing_worker, http, clients, ledger
):
    alice_id, bob_id = uid("alice"), uid("bob")
    await grant(http, stack, alice_id, 10, "g")
    await grant(http, stack, bob_id, 1, "g")
    alice = await connected(clients, stack, alice_id, node=0)
    bob = await connected(clients, stack, bob_id, node=1)  # another node: the tip crosses through Redis
    room = uid("room")
    await alice.join(room)
    await bob.join(room)

    first = await send_tip(alice, toUserId=bob_id, credits=3, roomId=room, clientTipId="t-1")
    again = await send_tip(alice, toUserId=bob_id, credits=3, roomId=room, clientTipId="t-1")  # a client retry
    assert first["status"] == "accepted" and first["clientTipId"] == "t-1"
    assert again == first  # the same tip id: one tip

    received = await bob.wait_for("tipReceived", lambda t: t["tipId"] == first["tipId"])
    assert received["fromUserId"] == alice_id and received["fromUsername"] == alice.name
    assert (received["credits"], received["roomId"], received["balance"]) == (3, room, 4)
    sent = await alice.wait_for("tipSent", lambda t: t["tipId"] == first["tipId"])
    assert (sent["toUserId"], sent["credits"], sent["balance"]) == (bob_id, 3, 7)
    shown = await bob.wait_for("newMessage", lambda m: m["messageId"] == first["tipId"])
    assert shown["kind"] == "tip" and shown["userId"] == alice_id and shown["roomId"] == room
    assert shown["tip"] == {"toUserId": bob_id, "credits": 3} and shown["words"] == 0

    await asyncio.sleep(1.0)  # let the duplicate drain
    assert (await stats(http, stack, alice_id))["credits"] == 7
    assert (await stats(http, stack, bob_id))["credits"] == 4
    command_id, _ = tip_ids(alice_id, "t-1")
    assert await tip_count(ledger, command_id) == 1
    assert {t["tipId"] for t in bob.events["tipReceived"]} == {first["tipId"]}  # clients dedupe on tipId

    carol = await connected(clients, stack, uid("carol"))  # a late joiner sees the tip in the history
    history = (await carol.join(room))["history"]
    assert [m["messageId"] for m in history if m["kind"] == "tip"] == [first["tipId"]]


async def test_a_redelivered_tip_command_moves_credits_once(stack, stack_env, billing_worker, http, clients, ledger):
    alice_id, bob_id = uid("alice"), uid("bob")
    await grant(http, stack, alice_id, 5, "g")
    await grant(http, stack, bob_id, 1, "g")
    bob = await connected(clients, stack, bob_id)
    command_id, tip_id = tip_ids(alice_id, "redelivered")
    cmd = SendTipCommand(
        command_id=command_id,
        tip_id=tip_id,
        user_id=alice_id,
        username="Alice",
        to_user_id=bob_id,
        credits=2,
        client_tip_id="redelivered",
        accepted_at_ms=int(time.time() * 1000),
    )
    await publish_commands(stack_env["AMQP_URL"], BILLING_QUEUE, SEND_TIP_ACTOR, [cmd] * 5)

    await bob.wait_for("tipReceived", lambda t: t["tipId"] == tip_id)
    deadline = time.monotonic() + 30  # every copy was handled...
    while (await ledger.fetchval("SELECT duplicates FROM event_log WHERE command_id = $1", command_id) or 0) < 4:
        assert time.monotonic() < deadline, "the redelivered copies were not processed"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    assert len([t for t in bob.events["tipReceived"] if t["tipId"] == tip_id]) == 1  # ...shown once
    assert await tip_count(ledger, command_id) == 1  # ...and exactly one moved credits
    assert (await stats(http, stack, alice_id))["credits"] == 3
    assert (await stats(http, stack, bob_id))["credits"] == 3


async def test_insufficient_credit_gets_credit_error_and_nothing_moves(stack, billing_worker, http, clients, ledger):
    alice_id, bob_id = uid("alice"), uid("bob")
    await grant(http, stack, alice_id, 2, "g")
    await grant(http, stack, bob_id, 1, "g")
    alice = await connected(clients, stack, alice_id)
    bob = await connected(clients, stack, bob_id, node=1)
    room = uid("room")
    await alice.join(room)
    await bob.join(room)

    ack = await send_tip(alice, toUserId=bob_id, credits=3, roomId=room, clientTipId="too-much")
    assert ack["status"] == "accepted"
    error = await alice.wait_for("creditError", lambda e: e.get("tipId") == ack["tipId"])
    assert error["code"] == "insufficient_credits" and error["kind"] == "tip"
    assert (error["required"], error["credits"], error["toUserId"]) == (3, 2, bob_id)
    assert "Insufficient credits" in error["message"]

    ok = await send_tip(alice, toUserId=bob_id, credits=2, roomId=room, clientTipId="all-of-it")
    await bob.wait_for("tipReceived", lambda t: t["tipId"] == ok["tipId"])  # later tips still go through
    assert not any(t["tipId"] == ack["tipId"] for t in bob.events["tipReceived"])
    assert not any(m["messageId"] == ack["tipId"] for m in bob.events["newMessage"])
    assert (await stats(http, stack, alice_id))["credits"] == 0
    assert (await stats(http, stack, bob_id))["credits"] == 3
    assert await tip_count(ledger, tip_ids(alice_id, "too-much")[0]) == 0


BAD_TIPS = [
    ({"credits": 0}, "credits"),
    ({"credits": -5}, "credits"),
    ({"credits": 1.5}, "credits"),
    ({"credits": "3"}, "credits"),
    ({"credits": True}, "credits"),
    ({"credits": None}, "credits"),
    ({"credits": 100_001}, "at most 100000"),
    ({"clientTipId": None}, "clientTipId"),
    ({"clientTipId": ""}, "clientTipId"),
    ({"clientTipId": "a:b"}, "clientTipId"),
    ({"toUserId": None}, "toUserId"),
    ({"toUserId": ""}, "toUserId"),
    ({"toUserId": "SELF"}, "cannot tip yourself"),
    ({"fromUserId": "mallory"}, "fromUserId"),
    ({"roomId": "not-joined"}, "join it first"),
    ({"roomId": "bad room!"}, "roomId"),
]


@pytest.mark.parametrize(
    ("change", "expected"), BAD_TIPS, ids=[f"{i}-{next(iter(c))}" for i, (c, _) in enumerate(BAD_TIPS)]
)
async def test_bad_tips_are_refused_in_the_ack(stack, billing_worker, http, clients, ledger, change, expected):
    alice_id, bob_id = uid("alice"), uid("bob")
    await grant(http, stack, alice_id, 5, "g")
    await grant(http, stack, bob_id, 1, "g")
    alice = await connected(clients, stack, alice_id)
    payload = {"toUserId": bob_id, "credits": 1, "clientTipId": uid("t")}
    for key, value in change.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = alice_id if value == "SELF" else value
    ack = await send_tip(alice, **payload)
    assert ack["status"] == "rejected", ack
    assert ack["error"]["code"] == "bad_request" and expected in ack["error"]["message"], ack
    assert alice.sio.connected
    await asyncio.sleep(0.3)
    assert (await stats(http, stack, alice_id))["credits"] == 5


async def test_a_bad_tip_without_an_ack_gets_an_error_event(stack, billing_worker, clients):
    alice = await connected(clients, stack, uid("alice"))
    await alice.sio.emit("sendTip", {"toUserId": "bob", "credits": -1, "clientTipId": "x"})
    error = await alice.wait_for("error", lambda e: e.get("event") == "sendTip")
    assert error["code"] == "bad_request" and "credits" in error["message"]


async def test_a_tip_in_a_customer_conversation_is_refused(stack, billing_worker, clients):
    operator = ChatClient(uid("op"))
    clients.append(operator)
    tenant = uid("tenant")
    await operator.connect(stack.ports[0], token=make_token(operator.user_id, role="operator", tenant=tenant))
    room = f"conv:{tenant}:{uuid.uuid4()}"
    await operator.join(room)
    ack = await send_tip(operator, toUserId="someone", credits=1, roomId=room, clientTipId="c")
    assert ack["status"] == "rejected" and "conversation" in ack["error"]["message"]


async def test_a_tip_to_an_unknown_user_is_refused_and_nothing_moves(stack, billing_worker, http, clients, ledger):
    alice_id = uid("alice")
    await grant(http, stack, alice_id, 5, "g")
    alice = await connected(clients, stack, alice_id)
    ghost = uid("ghost")
    ack = await send_tip(alice, toUserId=ghost, credits=1, clientTipId="typo")
    assert ack["status"] == "accepted"  # queued; the worker knows who exists
    error = await alice.wait_for("error", lambda e: e.get("tipId") == ack["tipId"])
    assert error["code"] == "unknown_user" and error["event"] == "sendTip" and ghost in error["message"]
    assert (await stats(http, stack, alice_id))["credits"] == 5
    assert await ledger.fetchval("SELECT count(*) FROM accounts WHERE account_id = $1", f"user:{ghost}") == 0


async def test_reusing_a_client_tip_id_for_another_tip_is_refused(stack, billing_worker, http, clients, ledger):
    alice_id, bob_id = uid("alice"), uid("bob")
    await grant(http, stack, alice_id, 10, "g")
    await grant(http, stack, bob_id, 1, "g")
    alice = await connected(clients, stack, alice_id)
    first = await send_tip(alice, toUserId=bob_id, credits=1, clientTipId="same")
    await alice.wait_for("tipSent", lambda t: t["tipId"] == first["tipId"])
    await send_tip(alice, toUserId=bob_id, credits=4, clientTipId="same")
    error = await alice.wait_for("error", lambda e: e.get("code") == "duplicate_tip_id")
    assert error["clientTipId"] == "same"
    assert (await stats(http, stack, alice_id))["credits"] == 9
    assert (await stats(http, stack, bob_id))["credits"] == 2
