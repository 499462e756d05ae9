"""Issue 12's edge findings, against real ingress nodes (and the chat workers of the session stack).

Most tests use the session ``stack``; those that need other settings use two "edge" nodes of
this module: webhook secrets, a private metrics listener, a small admin-failure budget and a key
prefix of their own (so their admin-failure counters never touch the stack's).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import jwt
import pytest
import socketio

from tests.support.clients import ChatClient, make_token
from tests.support.isolation import ADMIN_TOKEN, JWT_SECRET
from tests.support.processes import free_port
from tests.support.stripe_signing import lemonsqueezy_signature, stripe_signature

STRIPE_SECRET = "whsec_edges_" + secrets.token_hex(12)
LEMONSQUEEZY_SECRET = "ls-edges-" + secrets.token_hex(8)
ADMIN_FAILURES = 5


@dataclass
class Edge:
    ports: list[int]
    metrics_port: int

    def url(self, path: str, node: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[node]}{path}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


@pytest.fixture(scope="module")
def edge(stack, iso) -> Iterator[Edge]:
    metrics_port = free_port()
    env = {
        "KEY_PREFIX": f"{iso.key_prefix}-edges",
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "LEMONSQUEEZY_WEBHOOK_SECRET": LEMONSQUEEZY_SECRET,
        "ADMIN_AUTH_MAX_FAILURES": str(ADMIN_FAILURES),
        "ADMIN_AUTH_WINDOW_S": "60",
    }
    first = stack.processes.ingress(**env, METRICS_PORT=str(metrics_port))
    second = stack.processes.ingress(**env)
    yield Edge([first.port, second.port], metrics_port)
    for proc in (first, second):
        proc.terminate(timeout=15)
        stack.processes.started.remove(proc)


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def connect_error(port: int, token: str) -> dict | None:
    """The connect_error of a Socket.IO connection with ``token``, or None if it connected."""
    client = socketio.AsyncClient(reconnection=False)
    errors: list = []
    client.on("connect_error", lambda data: errors.append(data))
    try:
        await client.connect(
            f"http://127.0.0.1:{port}", auth={"token": token}, transports=["websocket"], wait_timeout=5
        )
    except socketio.exceptions.ConnectionError:
        return errors[0] if errors else {"message": "no connect_error"}
    await client.disconnect()
    return None


# --- 4: exp required, with a bounded clock skew --------------------------------------------------


async def test_a_token_without_exp_is_refused_and_the_skew_is_bounded(stack, http) -> None:
    user = uid("noexp")
    forever = jwt.encode({"sub": user, "name": user}, JWT_SECRET, algorithm="HS256")
    assert await connect_error(stack.ports[0], forever) == {"message": "unauthorized"}
    async with http.get(stack.url(f"/api/credits/stats/{user}"), headers=bearer(forever)) as resp:
        assert resp.status == 403
    admin_forever = jwt.encode({"sub": "root", "role": "admin"}, JWT_SECRET, algorithm="HS256")
    async with http.get(stack.url("/api/admin/queues"), headers=bearer(admin_forever)) as resp:
        assert resp.status == 403
    # JWT_LEEWAY_S (30 s by default): a token that expired 5 s ago on a slightly fast clock still
    # connects; one that expired two minutes ago does not.
    assert await connect_error(stack.ports[0], make_token(user, ttl_s=-5)) is None
    assert await connect_error(stack.ports[0], make_token(user, ttl_s=-120)) == {"message": "unauthorized"}


# --- 8: metrics labels and where /metrics is served -----------------------------------------------


async def test_metrics_are_private_without_a_token_and_labelled_by_route(edge: Edge, http) -> None:
    async with http.get(edge.url("/metrics")) as resp:
        assert resp.status == 404  # the public port: no METRICS_TOKEN, no metrics
    probes = [secrets.token_hex(6) for _ in range(40)]
    for probe in probes:
        async with http.post(edge.url(f"/webhooks/{probe}"), data=b"{}") as resp:
            assert resp.status in (404, 405)
        async with http.get(edge.url(f"/nowhere/{probe}")) as resp:
            assert resp.status == 404
    async with http.get(edge.metrics_url) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "gatekeeper_ingress_connections" in text
    assert not any(probe in text for probe in probes)  # no series per URL
    providers = {
        line.split('provider="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("gatekeeper_ingress_webhooks_total{")
    }
    assert providers <= {"stripe", "lemonsqueezy", "twilio", "meta"}


# --- 9: NUL and unpaired surrogates -----------------------------------------------------------------


async def test_nul_and_surrogates_are_refused_with_400(stack, http, admin_headers, clients) -> None:
    user = uid("nul")
    for path in (
        "/api/credits/stats/a%00b",
        "/api/plans/usage/a%00b",
        "/api/credits/history/a%00b",
        f"/api/credits/history/{user}?cursor=%00",
        "/api/admin/series?metric=%00",
        "/api/admin/tenants/t%00",
    ):
        async with http.get(stack.url(path), headers=admin_headers) as resp:
            assert resp.status == 400, (path, resp.status, await resp.text())
            assert (await resp.json())["error"]["code"] == "bad_request"
    bodies = {
        f"/api/credits/grant/{user}": '{"credits": 1, "reason": "a\\u0000b", "idempotencyKey": "k"}',
        "/api/admin/tenants": '{"tenantId": "t-edge-nul", "name": "x\\u0000"}',
        "/api/admin/dead-letters/requeue": '{"actor": "\\u0000"}',
    }
    for path, body in bodies.items():
        async with http.post(stack.url(path), data=body, headers=admin_headers) as resp:
            assert resp.status == 400, (path, resp.status, await resp.text())
    async with http.post(
        stack.url("/api/wallet/link"), data='{"address": "\\ud800"}', headers=bearer(make_token(user))
    ) as resp:
        assert resp.status == 400
    # Socket payloads: refused as bad_request, and the socket goes on.
    alice = await ChatClient(user).connect(stack.ports[0])
    clients.append(alice)
    for payload in (
        {"roomId": "general\u0000", "message": "hi"},
        {"roomId": "general", "message": "hi \ud800"},
        {"roomId": "general", "message": "hi", "clientMessageId": "c\u0000"},
    ):
        ack = await alice.sio.call("sendMessage", payload, timeout=10)
        assert ack["status"] == "rejected" and ack["error"]["code"] == "bad_request", (payload, ack)
    ack = await alice.sio.call("joinRoom", {"roomId": "r\u0000"}, timeout=10)
    assert ack["status"] == "rejected" and ack["error"]["code"] == "bad_request"
    await alice.join("general")
    assert (await alice.send("general", "still here"))["status"] == "accepted"


# --- 9: signed billing events with absurd numbers or odd shapes ----------------------------------


def stripe_body(
    data_object: str, *, created: str = "1700000000", event_type: str = "checkout.session.completed"
) -> bytes:
    return (
        f'{{"id": "evt_{uuid.uuid4().hex}", "object": "event", "type": "{event_type}", "created": {created},'
        f' "livemode": false, "data": {{"object": {data_object}}}}}'
    ).encode()


async def post_stripe(http, url: str, body: bytes) -> tuple[int, dict]:
    headers = {"content-type": "application/json", "Stripe-Signature": stripe_signature(body, STRIPE_SECRET)}
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def post_lemonsqueezy(http, url: str, body: bytes) -> tuple[int, dict]:
    headers = {"content-type": "application/json", "X-Signature": lemonsqueezy_signature(body, LEMONSQUEEZY_SECRET)}
    async with http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def ls_body(attributes: str, *, meta: str | None = None) -> bytes:
    meta = meta or '{"event_name": "order_created", "custom_data": {"user_id": "u-1"}}'
    return f'{{"meta": {meta}, "data": {{"type": "orders", "id": "42", "attributes": {attributes}}}}}'.encode()


async def test_signed_billing_events_with_absurd_fields_never_answer_500(edge: Edge, http) -> None:
    session = '{"object": "checkout.session", "id": "cs_1", "payment_status": "paid", "mode": "payment", %s}'
    absurd_stripe = [
        stripe_body(session % '"amount_total": 1e999, "metadata": {"user_id": "u", "pack": "pack_10"}'),
        stripe_body(session % '"amount_total": Infinity, "metadata": {"user_id": "u", "pack": "pack_10"}'),
        stripe_body(session % f'"amount_total": {2**70}, "metadata": {{"user_id": "u", "pack": "pack_10"}}'),
        stripe_body(session % '"amount_total": "500", "metadata": {"user_id": "u", "pack": "pack_10"}'),
        stripe_body(session % '"metadata": {"user_id": "u", "pack": "pack_10", "credits": "99999999999999999999"}'),
        stripe_body(session % '"metadata": ["u"]'),
        stripe_body(session % '"metadata": {"user_id": "u\\u0000", "pack": "pack_10"}'),
        stripe_body(session % '"amount_total": 500', created="1e999"),
        stripe_body(session % '"amount_total": 500', created=str(10**30)),
        stripe_body(
            '{"object": "subscription", "id": "sub_1", "current_period_end": 1e300}',
            event_type="customer.subscription.updated",
        ),
        stripe_body(
            '{"object": "subscription", "items": {"data": [{"current_period_end": 99999999999999}]}}',
            event_type="customer.subscription.updated",
        ),
        b'{"type": "charge.refunded", "data": {"object": {}}}',  # no id
    ]
    for body in absurd_stripe:
        status, reply = await post_stripe(http, edge.url("/webhooks/stripe"), body)
        assert status == 200 and reply.get("ignored") is True and reply.get("invalid"), (body, status, reply)
    for body in (b"[1]", b"null", b'"x"', b"{"):  # signed, but no JSON object: 400, as Stripe expects
        status, reply = await post_stripe(http, edge.url("/webhooks/stripe"), body)
        assert status == 400 and reply["error"]["code"] == "bad_request", (body, status, reply)
    absurd_lemonsqueezy = [
        ls_body('{"status": "paid", "total": 1e999, "first_order_item": {"variant_id": 1}}'),
        ls_body(f'{{"status": "paid", "total": {2**70}, "first_order_item": {{"variant_id": 1}}}}'),
        ls_body('{"status": "paid", "total": 2000, "refunded_amount": Infinity}'),
        ls_body('{"status": "paid", "total": "2000"}'),
        ls_body('{"status": "paid", "total": 2000, "first_order_item": [1]}'),
        ls_body('{"status": "paid", "total": 2000}', meta='{"event_name": "order_created", "custom_data": "u"}'),
        ls_body('{"status": "paid", "total": 2000}', meta='["order_created"]'),
        ls_body('{"status": "paid\\u0000", "total": 2000}'),
        ls_body("[]"),
    ]
    for body in absurd_lemonsqueezy:
        status, reply = await post_lemonsqueezy(http, edge.url("/webhooks/lemonsqueezy"), body)
        assert status == 400 and reply["error"]["code"] == "bad_request", (body, status, reply)
    async with http.get(edge.metrics_url) as resp:
        text = await resp.text()
    invalid = 'gatekeeper_ingress_webhooks_total{provider="stripe",result="invalid"}'
    assert any(line.startswith(invalid) and float(line.split()[-1]) >= len(absurd_stripe) for line in text.splitlines())
    async with http.get(edge.url("/health")) as resp:
        assert resp.status == 200


# --- 9: collision-free command ids ------------------------------------------------------------------


async def test_users_whose_ids_contain_colons_do_not_collide(stack, clients) -> None:
    base = uid("colon")
    room = uid("room")
    first, second = ChatClient(f"{base}:x"), ChatClient(base)  # "<base>:x" + "y" vs "<base>" + "x:y"
    watcher = ChatClient(uid("watcher"))
    for client in (first, second, watcher):
        await client.connect(stack.ports[0])
        clients.append(client)
        await client.join(room)
    ack_first = await first.send(room, "from the first", clientMessageId="y")
    ack_second = await second.send(room, "from the second", clientMessageId="x:y")
    assert ack_first["status"] == ack_second["status"] == "accepted", (ack_first, ack_second)
    assert ack_first["messageId"] != ack_second["messageId"]
    for text in ("from the first", "from the second"):
        await watcher.wait_for("newMessage", lambda m, text=text: m["message"] == text)


# --- 9: a grant key replayed with another amount --------------------------------------------------


async def grant(http, url: str, credits: int, key: str) -> tuple[int, dict]:
    body = {"credits": credits, "reason": "edge test", "idempotencyKey": key}
    async with http.post(url, json=body, headers={"x-admin-token": ADMIN_TOKEN}) as resp:
        return resp.status, await resp.json()


async def test_a_grant_key_replayed_with_another_amount_is_409(stack, http) -> None:
    user = uid("grant")
    url = stack.url(f"/api/credits/grant/{user}")
    assert (await grant(http, url, 5, "k1"))[0] == 201
    status, reply = await grant(http, url, 5, "k1")
    assert (status, reply["applied"], reply["credits"]) == (200, False, 5)
    status, reply = await grant(http, url, 7, "k1")
    assert status == 409 and reply["error"]["code"] == "idempotency_conflict", reply
    # Account and key are not joined ambiguously: user "<u>:a" key "b" and user "<u>" key "a:b" both land.
    assert (await grant(http, stack.url(f"/api/credits/grant/{user}:a"), 3, "b"))[0] == 201
    status, reply = await grant(http, url, 4, "a:b")
    assert (status, reply["credits"]) == (201, 9), reply


async def test_a_tenant_grant_key_replayed_with_another_amount_is_409(stack, http) -> None:
    tenant = uid("tgrant")
    body = {"tenantId": tenant, "name": "Grant Test"}
    async with http.post(stack.url("/api/admin/tenants"), json=body, headers={"x-admin-token": ADMIN_TOKEN}) as resp:
        assert resp.status == 201, await resp.text()
    url = stack.url(f"/api/admin/tenants/{tenant}/grant")
    assert (await grant(http, url, 5, "k1"))[0] == 201
    assert (await grant(http, url, 5, "k1"))[0] == 200
    status, reply = await grant(http, url, 7, "k1")
    assert status == 409 and reply["error"]["code"] == "idempotency_conflict", reply


# --- 9: admin-token guessing is throttled per IP ------------------------------------------------------


async def test_admin_auth_failures_are_throttled_per_ip_across_nodes(edge: Edge, http) -> None:
    queues = "/api/admin/queues"
    for i in range(ADMIN_FAILURES):
        # A forged X-Forwarded-For changes nothing: no TRUSTED_PROXIES, so the peer address counts.
        headers = {"x-admin-token": f"guess-{i}", "X-Forwarded-For": f"198.51.100.{i}"}
        async with http.get(edge.url(queues, i % 2), headers=headers) as resp:
            assert resp.status == 403
    for node in (0, 1):  # the count is in Redis: both nodes refuse this address now
        async with http.get(edge.url(queues, node), headers={"x-admin-token": "guess-again"}) as resp:
            assert resp.status == 429
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
            assert (await resp.json())["error"]["code"] == "rate_limited"
        async with http.get(edge.url(queues, node), headers={"x-admin-token": ADMIN_TOKEN}) as resp:
            assert resp.status == 429  # even the right token, so a guess that hits teaches nothing
    # Whoever presents no admin token is not affected.
    user = uid("bystander")
    async with http.get(edge.url(f"/api/credits/stats/{user}"), headers=bearer(make_token(user))) as resp:
        assert resp.status in (200, 404)


# --- 9: wallet challenges capped per user -------------------------------------------------------------


async def test_wallet_challenges_are_capped_per_user(stack, http) -> None:
    user, other = uid("wallet"), uid("wallet")
    url = stack.url("/api/wallet/link/challenge")

    async def ask(who: str) -> aiohttp.ClientResponse:
        async with http.post(url, headers=bearer(make_token(who))) as resp:
            await resp.read()
            return resp

    answers = await asyncio.gather(*(ask(user) for _ in range(8)))  # concurrent: the cap still holds
    assert sorted(r.status for r in answers) == [201] * 5 + [429] * 3
    refused = next(r for r in answers if r.status == 429)
    assert 1 <= int(refused.headers["Retry-After"]) <= 300
    assert (await ask(other)).status == 201


# --- 9: JSON APIs are neither sniffed nor cached ------------------------------------------------------


async def test_json_apis_carry_nosniff_and_no_store(stack, http, admin_headers) -> None:
    user = uid("headers")
    cases = [
        ("GET", f"/api/credits/stats/{user}", bearer(make_token(user))),  # 404 unknown_user
        ("GET", "/api/admin/queues", {}),  # 403 raised by require_admin
        ("GET", "/api/chat/stats", {}),
        ("GET", "/health", {}),
        ("POST", f"/api/credits/grant/{user}", admin_headers),  # 400: no body
    ]
    for method, path, headers in cases:
        async with http.request(method, stack.url(path), headers=headers) as resp:
            assert resp.headers.get("X-Content-Type-Options") == "nosniff", (path, resp.status)
            assert resp.headers.get("Cache-Control") == "no-store", (path, resp.status)
    async with http.get(stack.url("/static/css/app.css")) as resp:  # static files keep revalidation
        assert resp.status == 200
        assert resp.headers.get("Cache-Control") == "no-cache" and resp.headers.get("ETag")
