"""``/metrics`` end to end: a real ingress node and a real chat worker pool serving metrics.

The module runs its own node and pool in a vhost of their own (and a key prefix of their own),
so the counts it scrapes are exactly the traffic it made. No pool consumes ``billing`` there,
so a Stripe event the node accepted stays ready in that queue, which the queue-depth gauge shows.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest
import socketio
from dramatiq.common import xq_name
from prometheus_client.parser import text_string_to_metric_families

from schemas.queues import BILLING_QUEUE, CHAT_QUEUE, SEND_MESSAGE_ACTOR
from tests.support import isolation
from tests.support.clients import ChatClient, make_token
from tests.support.isolation import ADMIN_TOKEN
from tests.support.processes import Processes, free_port, wait_for_log
from tests.support.stripe_signing import body_of, stripe_signature

STRIPE_WEBHOOK_SECRET = "whsec_metrics_" + secrets.token_hex(12)
METRICS_TOKEN = "metrics-token-" + secrets.token_hex(8)


@dataclass
class Observed:
    port: int
    metrics_port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def observed(iso, stack_env) -> Iterator[Observed]:
    vhost = f"{iso.vhost}_metrics"
    isolation.create_vhost(vhost)
    env = {
        **stack_env,
        "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
        "KEY_PREFIX": f"{iso.key_prefix}-metrics",
        "RATE_LIMITS": "200/1s",
        "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    procs = Processes(env)
    metrics_port = free_port()
    try:
        node = procs.ingress()
        pool = procs.workers("chat", processes=2, threads=4, WORKER_METRICS_PORT=str(metrics_port))
        # The metrics server is a fork of its own, which may bind after the workers are ready.
        wait_for_log(pool, "worker.metrics_serving")
        yield Observed(node.port, metrics_port)
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(http: aiohttp.ClientSession, url: str, token: str | None = METRICS_TOKEN) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/plain"
        return parse(await resp.text())


async def post_stripe(http: aiohttp.ClientSession, url: str, payload: dict, secret: str) -> int:
    body = body_of(payload)
    headers = {"content-type": "application/json", "Stripe-Signature": stripe_signature(body, secret)}
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status


def checkout_event(event_id: str) -> dict:
    session = {"id": f"cs_{event_id}", "object": "checkout.session", "payment_status": "paid", "metadata": {}}
    return {"id": event_id, "type": "checkout.session.completed", "created": 1, "data": {"object": session}}


async def test_metrics_needs_the_token(http, observed: Observed) -> None:
    async with http.get(observed.url("/metrics")) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
    async with http.get(observed.url("/metrics"), headers={"Authorization": "Bearer wrong"}) as resp:
        assert resp.status == 401


async def test_ingress_and_worker_metrics_move_by_the_traffic(http, observed: Observed, clients) -> None:
    node_url, worker_url = observed.url("/metrics"), f"http://127.0.0.1:{observed.metrics_port}/metrics"
    before, worker_before = await scrape(http, node_url), await scrape(http, worker_url, None)

    alice, bob = ChatClient(f"alice-{uuid.uuid4().hex[:8]}"), ChatClient(f"bob-{uuid.uuid4().hex[:8]}")
    async with http.post(
        observed.url(f"/api/credits/grant/{alice.user_id}"),
        json={"credits": 100, "reason": "test", "idempotencyKey": uuid.uuid4().hex},
        headers={"x-admin-token": ADMIN_TOKEN},
    ) as resp:
        assert resp.status in (200, 201), await resp.text()
    for client in (alice, bob):
        clients.append(await client.connect(observed.port))
    mid_connections = value(await scrape(http, node_url), "gatekeeper_ingress_connections")
    assert mid_connections == value(before, "gatekeeper_ingress_connections") + 2

    room = f"room-{uuid.uuid4().hex[:8]}"
    await alice.join(room)
    await bob.join(room)
    for n in range(3):
        ack = await alice.send(room, f"hello number {n}", clientMessageId=uuid.uuid4().hex)
        assert ack["status"] == "accepted", ack
        # Applied before the next is sent: three messages of their own, not one bundle of the queued
        # ones (workers/partition_consumer.py), so each is counted under chat_send_message.
        await bob.wait_count("newMessage", n + 1, lambda m: m["roomId"] == room)
    bad = await alice.sio.call("sendMessage", {"roomId": room}, timeout=10)  # no message text
    assert bad["error"]["code"] == "bad_request"
    with pytest.raises(socketio.exceptions.ConnectionError):
        await ChatClient("mallory").connect(observed.port, token=make_token("mallory") + "x")

    hook = observed.url("/webhooks/stripe")
    event = checkout_event(f"evt_{uuid.uuid4().hex}")
    assert await post_stripe(http, hook, event, STRIPE_WEBHOOK_SECRET) == 200
    assert await post_stripe(http, hook, event, STRIPE_WEBHOOK_SECRET) == 200  # a redelivery
    assert await post_stripe(http, hook, event, "whsec_wrong") == 400

    after = await scrape(http, node_url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("gatekeeper_ingress_socket_events_total", event="sendMessage") == 4
    assert delta("gatekeeper_ingress_socket_events_total", event="joinRoom") == 2
    assert delta("gatekeeper_ingress_ack_latency_seconds_count", event="sendMessage", status="accepted") == 3
    assert delta("gatekeeper_ingress_ack_latency_seconds_count", event="sendMessage", status="rejected") == 1
    assert delta("gatekeeper_ingress_ack_latency_seconds_sum", event="sendMessage", status="accepted") > 0
    # Each of the 3 messages was relayed once by this node, to the room its two clients share.
    assert delta("gatekeeper_ingress_delivery_latency_seconds_count", event="newMessage", kind="user") == 3
    assert delta("gatekeeper_ingress_delivery_latency_seconds_bucket", event="newMessage", kind="user", le="+Inf") == 3
    assert delta("gatekeeper_ingress_rejections_total", channel="socket", reason="bad_request") == 1
    assert delta("gatekeeper_ingress_rejections_total", channel="socket", reason="unauthorized") == 1
    assert delta("gatekeeper_ingress_rejections_total", channel="http", reason="bad_signature") == 1
    assert delta("gatekeeper_ingress_webhooks_total", provider="stripe", result="accepted") == 1
    assert delta("gatekeeper_ingress_webhooks_total", provider="stripe", result="duplicate") == 1
    assert delta("gatekeeper_ingress_webhooks_total", provider="stripe", result="bad_signature") == 1

    await alice.close()
    await bob.close()
    await _until(
        lambda s: value(s, "gatekeeper_ingress_connections") == value(before, "gatekeeper_ingress_connections"),
        lambda: scrape(http, node_url),
    )

    chat = {"queue": CHAT_QUEUE, "actor": SEND_MESSAGE_ACTOR}
    worker_after = await _until(
        lambda s: (
            value(s, "gatekeeper_worker_messages_processed_total", **chat)
            - value(worker_before, "gatekeeper_worker_messages_processed_total", **chat)
            >= 3
        ),
        lambda: scrape(http, worker_url, None),
    )

    def worker_delta(name: str, **labels: str) -> float:
        return value(worker_after, name, **labels) - value(worker_before, name, **labels)

    assert worker_delta("gatekeeper_worker_messages_processed_total", **chat) == 3
    assert worker_delta("gatekeeper_worker_message_duration_seconds_count", **chat) == 3
    assert worker_delta("gatekeeper_worker_messages_failed_total", **chat) == 0
    assert worker_delta("gatekeeper_worker_messages_retried_total", **chat) == 0
    assert value(worker_after, "gatekeeper_worker_messages_in_progress", **chat) == 0
    # The accepted Stripe event waits in ``billing``: no pool consumes it in this vhost.
    assert value(worker_after, "gatekeeper_queue_depth_up") == 1
    assert value(worker_after, "gatekeeper_queue_messages_ready", queue=BILLING_QUEUE) == 1
    assert value(worker_after, "gatekeeper_queue_messages_ready", queue=CHAT_QUEUE) == 0
    assert value(worker_after, "gatekeeper_queue_consumers", queue=CHAT_QUEUE) >= 1
    assert value(worker_after, "gatekeeper_queue_consumers", queue=BILLING_QUEUE) == 0


async def _until(done, fetch, timeout: float = 15) -> Samples:
    async with asyncio.timeout(timeout):
        while True:
            samples = await fetch()
            if done(samples):
                return samples
            await asyncio.sleep(0.2)


async def test_worker_metrics_count_failures_retries_and_dead_letters(http, observed: Observed, pool, clients) -> None:
    """A room PostgreSQL refuses: the command fails, is retried 5 times (the chat policy), then dead-lettered."""
    worker_url = f"http://127.0.0.1:{observed.metrics_port}/metrics"
    room = f"refused-{uuid.uuid4().hex[:8]}"
    await pool.execute(
        "CREATE OR REPLACE FUNCTION metrics_test_refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'test fault: room % refused', NEW.room_id; END $$"
    )
    await pool.execute(
        f"CREATE TRIGGER metrics_test_refuse BEFORE INSERT ON messages FOR EACH ROW"
        f" WHEN (NEW.room_id = '{room}') EXECUTE FUNCTION metrics_test_refuse()"
    )
    try:
        before = await scrape(http, worker_url, None)
        carol = ChatClient(f"carol-{uuid.uuid4().hex[:8]}")
        clients.append(await carol.connect(observed.port))
        await carol.join(room)
        ack = await carol.send(room, "this one cannot be stored", clientMessageId=uuid.uuid4().hex)
        assert ack["status"] == "accepted", ack
        chat = {"queue": CHAT_QUEUE, "actor": SEND_MESSAGE_ACTOR}

        def delta(samples: Samples, name: str) -> float:
            return value(samples, name, **chat) - value(before, name, **chat)

        after = await _until(
            lambda s: delta(s, "gatekeeper_worker_messages_dead_lettered_total") >= 1,
            lambda: scrape(http, worker_url, None),
            timeout=60,
        )
    finally:
        await pool.execute("DROP TRIGGER IF EXISTS metrics_test_refuse ON messages")
    assert delta(after, "gatekeeper_worker_messages_processed_total") == 6
    assert delta(after, "gatekeeper_worker_messages_failed_total") == 6
    assert delta(after, "gatekeeper_worker_messages_retried_total") == 5
    assert delta(after, "gatekeeper_worker_messages_dead_lettered_total") == 1
    assert value(after, "gatekeeper_queue_messages_ready", queue=xq_name(CHAT_QUEUE)) >= 1
