"""Outbound delivery through a real worker pool and RabbitMQ, against the fake Twilio and Meta servers.

The fakes run on this test's event loop and the worker process reaches them over loopback, so
every blocking call (starting, stopping, killing workers; rabbitmqctl) goes through a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import pytest
from redis.asyncio import Redis

from domain.channels import Channel
from schemas.commands import SendOutbound
from schemas.queues import OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR
from tests.support import isolation
from tests.support.amqp import publish_commands, queue_counts
from tests.support.fake_providers import FakeMeta, FakeTwilio
from tests.support.outbound_rows import IG_ACCOUNT_ID, TWILIO_NUMBER, WA_PHONE_NUMBER_ID, insert_outbound
from tests.support.processes import Processes
from tests.support.waiting import wait_until


def send_command(message_id: str) -> SendOutbound:
    return SendOutbound(command_id=f"send:{message_id}", message_id=message_id)


async def publish_sends(amqp_url: str, commands: list[SendOutbound]) -> None:
    await publish_commands(amqp_url, OUTBOUND_QUEUE, SEND_OUTBOUND_ACTOR, commands)


@pytest.fixture
def outbound_vhost(iso):
    """A vhost of this test's own: no other pool consumes its outbound queue."""
    vhost = f"{iso.vhost}_outbound"
    isolation.create_vhost(vhost)
    yield f"{isolation.AMQP_BASE}/{vhost}", vhost
    isolation.delete_vhost(vhost)


@pytest.fixture
async def fakes():
    async with FakeTwilio() as twilio, FakeMeta() as meta:
        yield twilio, meta


@pytest.fixture
def worker_env(stack_env, outbound_vhost, fakes) -> dict[str, str]:
    twilio, meta = fakes
    return {
        **stack_env,
        "AMQP_URL": outbound_vhost[0],
        "TWILIO_API_BASE_URL": twilio.url,
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "META_GRAPH_URL": meta.url,
        "META_ACCESS_TOKEN": meta.access_token,
        "OUTBOUND_MAX_ATTEMPTS": "3",
        "OUTBOUND_TIMEOUT_S": "10",
    }


@contextlib.asynccontextmanager
async def status_events(stack_env: dict[str, str]):
    """Collect the ``messageStatus`` emits the workers publish to the Socket.IO Redis channel."""
    redis = Redis.from_url(stack_env["REDIS_URL"])
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"{stack_env['KEY_PREFIX']}:socketio")
    seen: list[dict] = []

    async def listen() -> None:
        async for item in pubsub.listen():
            message = json.loads(item["data"])
            if message.get("event") == "messageStatus":
                seen.append({"room": message["room"], **message["data"][0]})

    task = asyncio.create_task(listen())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pubsub.aclose()
        await redis.aclose()


async def statuses(pool, message_ids: list[str]) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT message_id, status FROM outbound_messages WHERE message_id = ANY($1)",
        [uuid.UUID(m) for m in message_ids],
    )
    return {str(r["message_id"]): r["status"] for r in rows}


async def test_a_redelivered_send_command_makes_exactly_one_provider_request(
    worker_env, outbound_vhost, fakes, stack_env, ledger
):
    twilio, meta = fakes
    amqp_url, vhost = outbound_vhost
    messages = [
        await insert_outbound(ledger, Channel.TWILIO_WHATSAPP, TWILIO_NUMBER, "+34600444111"),
        await insert_outbound(ledger, Channel.TWILIO_SMS, TWILIO_NUMBER, "+34600444222"),
        await insert_outbound(ledger, Channel.META_WHATSAPP, WA_PHONE_NUMBER_ID, "34600444333"),
        await insert_outbound(ledger, Channel.INSTAGRAM, IG_ACCOUNT_ID, "7654321098765432"),
    ]
    ids = [m.message_id for m in messages]
    twilio.delay_s = meta.delay_s = 0.3  # so that the three copies overlap in flight
    procs = Processes(worker_env)
    async with status_events(stack_env) as events:
        await publish_sends(amqp_url, [send_command(i) for i in ids] * 3)
        try:
            workers = await asyncio.to_thread(procs.workers, "outbound", processes=1, threads=16)
            await wait_until(lambda: statuses(ledger, ids), dict.fromkeys(ids, "sent"), timeout=60)
            await wait_until(lambda: asyncio.to_thread(queue_counts, vhost, OUTBOUND_QUEUE), (0, 0), timeout=60)

            # Once more, after the provider id is recorded.
            await publish_sends(amqp_url, [send_command(i) for i in ids])
            await wait_until(lambda: asyncio.to_thread(queue_counts, vhost, OUTBOUND_QUEUE), (0, 0), timeout=60)
            await asyncio.sleep(0.5)  # let the last status events arrive
        finally:
            await asyncio.to_thread(procs.stop_all)

    for m in messages:
        assert twilio.count(text=m.body) + meta.count(text=m.body) == 1, m
    accepted = {r.text: r.provider_id for r in twilio.accepted() + meta.accepted()}
    rows = await ledger.fetch(
        "SELECT message_id, provider_message_id, attempts FROM outbound_messages WHERE message_id = ANY($1)",
        [uuid.UUID(i) for i in ids],
    )
    by_id = {str(r["message_id"]): r for r in rows}
    for m in messages:
        assert by_id[m.message_id]["provider_message_id"] == accepted[m.body]
        assert by_id[m.message_id]["attempts"] == 1

    done = [json.loads(line) for line in workers.log().splitlines() if '"outbound.done"' in line]
    assert len(done) == 16  # 4 messages x (3 copies + 1 replay), each handled once
    assert sorted(d["message_id"] for d in done if d["status"] == "sent") == sorted(ids)
    for m in messages:  # published after the commit, to the conversation's room
        mine = [e for e in events if e["messageId"] == m.message_id]
        assert mine and {(e["room"], e["status"]) for e in mine} == {(m.room, "sent")}


async def test_kill_minus_9_mid_send_never_resends_a_recorded_message(worker_env, outbound_vhost, fakes, ledger):
    twilio, _ = fakes
    amqp_url, vhost = outbound_vhost
    twilio.delay_s = 1.0
    total = 150
    tenant = f"t-kill-{uuid.uuid4().hex[:8]}"
    messages = [
        await insert_outbound(ledger, Channel.TWILIO_SMS, TWILIO_NUMBER, f"+3469{i:07d}", tenant_id=tenant)
        for i in range(total)
    ]
    ids = [m.message_id for m in messages]
    await publish_sends(amqp_url, [send_command(i) for i in ids])

    async def recorded() -> dict[str, str]:
        rows = await ledger.fetch(
            "SELECT message_id, provider_message_id FROM outbound_messages"
            " WHERE message_id = ANY($1) AND provider_message_id IS NOT NULL",
            [uuid.UUID(i) for i in ids],
        )
        return {str(r["message_id"]): r["provider_message_id"] for r in rows}

    procs = Processes(worker_env)
    try:
        first = await asyncio.to_thread(procs.workers, "outbound", processes=1, threads=16)
        deadline = time.monotonic() + 60
        while (len(await recorded()) < 40 or twilio.in_flight == 0) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        in_flight_at_kill = twilio.in_flight
        await asyncio.to_thread(first.kill9)  # SIGKILL the pool while its sends wait on the provider
        at_kill = await recorded()
        sending_at_kill = await ledger.fetchval(
            "SELECT count(*) FROM outbound_messages WHERE message_id = ANY($1) AND status = 'sending'",
            [uuid.UUID(i) for i in ids],
        )
        assert 0 < len(at_kill) < total and in_flight_at_kill > 0, "the kill did not land mid-flight"

        await asyncio.to_thread(procs.workers, "outbound", processes=1, threads=16)
        await wait_until(lambda: statuses(ledger, ids), dict.fromkeys(ids, "sent"), timeout=120)
        await wait_until(lambda: asyncio.to_thread(queue_counts, vhost, OUTBOUND_QUEUE), (0, 0), timeout=60)
    finally:
        await asyncio.to_thread(procs.stop_all)

    final = await recorded()
    counts = twilio.counts_by_text()
    by_body = {m.message_id: m.body for m in messages}
    issued = {r.provider_id: r.text for r in twilio.accepted()}
    # The guarantee: a message whose provider id was recorded is never sent again.
    for message_id, provider_id in at_kill.items():
        assert counts[by_body[message_id]] == 1, f"{message_id} was sent again after its id was recorded"
        assert final[message_id] == provider_id
    # Every recorded id is one the provider issued for that very message.
    assert all(issued[final[m]] == by_body[m] for m in ids)
    # Duplicates happen only inside the window: requests the killed worker had in flight.
    duplicates = sum(counts[by_body[m]] for m in ids) - total
    assert all(counts[by_body[m]] <= 2 for m in ids)
    assert duplicates <= sending_at_kill, (duplicates, sending_at_kill)
    print(
        f"killed with {len(at_kill)} sends recorded, {sending_at_kill} claimed but unrecorded ('sending'),"
        f" {in_flight_at_kill} requests at the provider; {duplicates} message(s) sent twice, all claimed"
        f" and unrecorded at the kill (the window); 0 recorded messages sent again"
    )
