"""Hostile input against running ingress nodes: nothing may crash a node or reach a 500.

First one test per finding (issue 12, points 1 and 2), each of which failed before its fix:

* ``40`` followed by 65,530 ``[``, before any token, over a WebSocket and over long-polling, and a
  validly signed Meta webhook nested 100,000 deep, killed the node with SIGSEGV (a dependency had
  raised the recursion limit; JSON is now bounded before parsing: infra/json_limits.py);
* a binary packet announcing 9,999,999,999 attachments, followed by binary frames, was buffered
  without limit (binary packets now close the socket: ingress/socket_server.py);
* found by the fuzzers here: a long-polling POST carrying a packet Engine.IO refuses was held open
  until the client polled again, which a hostile client never does.

Then hypothesis fuzzers (bounded: a few hundred frames and bodies in all) of Engine.IO and
Socket.IO frames, before and after authentication, and of webhook bodies, signed and not, against
a node of their own; after every batch the node must still be running and answer a normal request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from tests.support import isolation
from tests.support.clients import ChatClient, make_token
from tests.support.isolation import META_APP_SECRET, PUBLIC_BASE_URL, TWILIO_AUTH_TOKEN
from tests.support.processes import Proc, Processes
from tests.support.stacks import Stack
from tests.support.stripe_signing import lemonsqueezy_signature, stripe_signature

SOCKET_PATH = "/socket.io/?EIO=4"
DEEP_FRAME = "40" + "[" * 65_530  # under the 64 KiB frame limit
STRIPE_SECRET = "whsec_hostile_" + secrets.token_hex(8)
LEMONSQUEEZY_SECRET = "ls-hostile-" + secrets.token_hex(8)
CLOSE_TIMEOUT_S = 15


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


class RawSocket:
    """Engine.IO v4 over a WebSocket, spoken by hand, so a test can send what no client library would."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.texts: list[str] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, port: int) -> RawSocket:
        ws = await http.ws_connect(f"ws://127.0.0.1:{port}{SOCKET_PATH}&transport=websocket")
        sock = cls(ws)
        opening = await sock.text(lambda t: True)
        assert opening.startswith("0{"), opening
        return sock

    async def _read(self) -> None:
        try:
            async for msg in self.ws:  # ends on the server's close (answered by aiohttp)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.texts.append(msg.data)
                    if msg.data == "2":
                        await self.ws.send_str("3")  # Engine.IO pong
                    self._changed.set()
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            pass
        finally:
            self.closed.set()
            self._changed.set()

    async def text(self, predicate: Callable[[str], bool], timeout: float = 10) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for text in self.texts:
                    if predicate(text):
                        return text
                if self.closed.is_set():
                    raise AssertionError(f"closed by the server; received {self.texts!r}"[:2000])
                self._changed.clear()
                await self._changed.wait()

    async def authenticate(self, user_id: str) -> None:
        await self.ws.send_str("40" + json.dumps({"token": make_token(user_id)}))
        answer = await self.text(lambda t: t.startswith(("40", "44")))
        assert answer.startswith("40{"), answer

    async def send(self, frame: str | bytes, *, as_text: bool = True) -> bool:
        """False once the connection is gone."""
        if self.closed.is_set() or self.ws.closed:
            return False
        try:
            if isinstance(frame, str):
                await self.ws.send_str(frame)
            elif as_text:  # a text frame that is not UTF-8
                await self.ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
            else:
                await self.ws.send_bytes(frame)
            return True
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            return False

    async def closed_by_server(self, timeout: float = CLOSE_TIMEOUT_S) -> list[str]:
        """What the server sent before it closed the connection; fails if it does not close it."""
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"the server did not close the connection within {timeout} s") from None
        return self.texts

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


def events_of(texts: list[str]) -> list[list[Any]]:
    return [json.loads(t[2:]) for t in texts if t.startswith("42")]


async def node_serves(http: aiohttp.ClientSession, node: Proc) -> None:
    """The process is alive and answers /health."""
    assert node.popen.poll() is None, f"the node died ({node.popen.returncode}):\n{node.log()[-3000:]}"
    async with http.get(f"http://127.0.0.1:{node.port}/health", timeout=aiohttp.ClientTimeout(total=10)) as r:
        assert r.status == 200, await r.text()


async def chat_round_trip(port: int, clients: list[ChatClient]) -> None:
    user = ChatClient(uid("after"))
    clients.append(user)
    await user.connect(port)
    room = uid("room")
    await user.join(room)
    ack = await user.send(room, "still serving")
    assert ack["status"] == "accepted", ack
    await user.wait_for("newMessage", lambda m: m["messageId"] == ack["messageId"])
    await user.close()


def meta_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(META_APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


# --- the findings ------------------------------------------------------------------------------


async def test_a_deep_frame_before_auth_over_websocket_closes_only_that_socket(stack: Stack, http, clients):
    node = stack.nodes[0]
    bystander = ChatClient(uid("bystander"))
    clients.append(bystander)
    await bystander.connect(node.port)
    sock = await RawSocket.open(http, node.port)
    assert await sock.send(DEEP_FRAME)
    await sock.closed_by_server()
    await node_serves(http, node)
    await chat_round_trip(node.port, clients)
    assert bystander.sio.connected


async def test_a_deep_frame_before_auth_over_long_polling(stack: Stack, http, clients):
    node = stack.nodes[0]
    polling = f"http://127.0.0.1:{node.port}{SOCKET_PATH}&transport=polling"
    async with http.get(polling) as r:
        assert r.status == 200
        sid = json.loads((await r.text())[1:])["sid"]
    async with http.post(f"{polling}&sid={sid}", data=DEEP_FRAME.encode()) as r:
        assert r.status == 200  # Engine.IO takes the payload; the packet is refused as it is handled
    # The session ends: the next poll gets the CLOSE packet, or the session is already gone.
    async with http.get(f"{polling}&sid={sid}", timeout=aiohttp.ClientTimeout(total=30)) as r:
        body = await r.text()
        assert r.status == 400 or "1" in body.split("\x1e"), (r.status, body)
    await node_serves(http, node)
    await chat_round_trip(node.port, clients)


async def test_a_packet_engineio_refuses_on_long_polling_ends_the_session_at_once(stack: Stack, http):
    """Found by the fuzzer below: python-engineio waited for the client to poll once more before
    answering such a POST, so a client that never did held the request and its session forever."""
    polling = f"http://127.0.0.1:{stack.ports[0]}{SOCKET_PATH}&transport=polling"
    for body in (b"2", b"0", b"6"):  # a client's PING, OPEN, NOOP
        async with http.get(polling) as r:
            sid = json.loads((await r.text())[1:])["sid"]
        async with http.post(f"{polling}&sid={sid}", data=body, timeout=aiohttp.ClientTimeout(total=10)) as r:
            assert r.status == 400, await r.text()
        async with http.get(f"{polling}&sid={sid}") as r:
            assert r.status == 400  # the session is gone


async def test_a_deep_signed_meta_webhook_is_refused_with_400(stack: Stack, http, clients):
    node = stack.nodes[0]
    body = b'{"entry":' * 100_000 + b"[]" + b"}" * 100_000
    headers = {"X-Hub-Signature-256": meta_signature(body), "Content-Type": "application/json"}
    async with http.post(stack.url("/webhooks/meta"), data=body, headers=headers) as r:
        assert r.status == 400, await r.text()
        assert (await r.json())["error"]["code"] == "json_too_deep"
    await node_serves(http, node)
    await chat_round_trip(node.port, clients)


async def test_a_deep_event_from_a_connected_socket_gets_an_error_then_the_socket_is_closed(stack: Stack, http):
    sock = await RawSocket.open(http, stack.ports[0])
    await sock.authenticate(uid("deep"))
    assert await sock.send('42["sendMessage",' + "[" * 60_000)
    texts = await sock.closed_by_server()
    [error] = [data for name, data in events_of(texts) if name == "error"]
    assert error["code"] == "bad_request" and "deeper than 32" in error["message"]


async def test_a_deep_http_body_is_refused_with_400(stack: Stack, http, admin_headers):
    for body in ("[" * 50_000, '{"credits":' * 5_000 + "1" + "}" * 5_000):
        async with http.post(stack.url("/api/credits/grant/someone"), data=body, headers=admin_headers) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "json_too_deep"


async def test_binary_packets_close_only_that_socket_and_memory_stays_flat(stack: Stack, http, clients):
    node = stack.nodes[0]
    bystander = ChatClient(uid("bystander"))
    clients.append(bystander)
    await bystander.connect(node.port)
    room = uid("room")
    await bystander.join(room)
    sock = await RawSocket.open(http, node.port)
    await sock.authenticate(uid("binary"))
    before = rss_kib(node.pid)
    # The finding: 9,999,999,999 attachments announced, then 64 KiB binary frames (32 MB here).
    assert await sock.send('459999999999-["sendMessage",{"_placeholder":true,"num":0}]')
    frame, sent = bytes(60_000), 0
    for _ in range(550):
        if not await sock.send(frame, as_text=False):
            break
        sent += len(frame)
    grown = rss_kib(node.pid) - before
    print(f"binary attachments: {sent} bytes sent before the close, node RSS {grown:+} KiB")
    assert grown < 16 * 1024, f"RSS grew {grown} KiB after {sent} bytes sent"
    texts = await sock.closed_by_server()
    [error] = [data for name, data in events_of(texts) if name == "error"]
    assert error["code"] == "bad_request" and "binary" in error["message"]
    # A raw binary message, before any packet, is refused the same way.
    raw = await RawSocket.open(http, node.port)
    assert await raw.send(b"\x04binary", as_text=False)
    await raw.closed_by_server()
    ack = await bystander.send(room, "unaffected")
    assert ack["status"] == "accepted", ack
    await node_serves(http, node)


# --- fuzzers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile(iso, stack_env) -> Iterator[Proc]:
    """A node with every webhook secret, publishing into a vhost no worker consumes."""
    vhost = f"{iso.vhost}_hostile"
    isolation.create_vhost(vhost)
    procs = Processes(
        {
            **stack_env,
            "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "META_APP_SECRET": META_APP_SECRET,
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
            "LEMONSQUEEZY_WEBHOOK_SECRET": LEMONSQUEEZY_SECRET,
        }
    )
    try:
        yield procs.ingress()
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


async def answers_a_normal_request(node: Proc) -> None:
    """After a batch: alive, /health, and a fresh client can connect and join a room."""
    async with aiohttp.ClientSession() as http:
        await node_serves(http, node)
    client = ChatClient(uid("probe"))
    try:
        await client.connect(node.port)
        await client.join(uid("room"))
    finally:
        if client.sio.connected:
            await client.close()


FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
EVENTS = [
    "sendMessage",
    "joinRoom",
    "leaveRoom",
    "typing-start",
    "mark-read",
    "sendTip",
    "initiate-call",
    "signal",
    "callHeartbeat",
    "takeOverConversation",
    "connect",
    "disconnect",
    "",
    "__proto__",
]
HUGE = ["9" * 30, "-1", "1e999", "18446744073709551616", "0" * 120]
# Leaves that json.dumps cannot make: substituted into the text after dumping.
RAW_TOKENS = ["1e999", "-1e999", "123456789012345678901234567890", "NaN", "-Infinity", "1" * 5000]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**200)
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["\x00", "\ud800", "x" * 5000, "¡hola!"])
    | st.sampled_from(RAW_TOKENS).map(lambda t: f"@@{t}@@")
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
deep = st.integers(min_value=30, max_value=60_000).flatmap(
    lambda n: st.sampled_from(["[" * n, "{" * n, '{"a":' * n, "[" * n + "]" * n, '["x",' + "[" * n])
)


def dumps(value: Any) -> str:
    text = json.dumps(value, allow_nan=True)  # ASCII: a lone surrogate travels as its \\u escape
    return re.sub(r'"@@(.*?)@@"', r"\1", text)


def socket_packet() -> st.SearchStrategy[str]:
    """One Socket.IO packet, more or less well formed, without its Engine.IO ``4``."""
    payload = st.one_of(
        st.tuples(st.sampled_from(EVENTS) | st.text(max_size=12), values).map(lambda t: dumps([t[0], t[1]])),
        values.map(dumps),
        deep,
        st.text(max_size=60),
        st.just(""),
    )
    return st.builds(
        lambda kind, attachments, namespace, ack, body, cut: (kind + attachments + namespace + ack + body)[:cut],
        st.sampled_from("0123456" + "789x-") | st.text(max_size=2),
        st.just("") | st.sampled_from(["1-", "9999999999-", "0-", "-"]),
        st.just("") | st.sampled_from(["/,", "/admin,", "/x?y=1,", "/"]) | st.text(max_size=6).map(lambda t: f"/{t},"),
        st.just("") | st.sampled_from(["1", "0", *HUGE]) | st.integers(min_value=0).map(str),
        payload,
        st.integers(min_value=0, max_value=70_000),
    )


frames = st.one_of(
    socket_packet().map(lambda p: "4" + p),  # a Socket.IO packet in an Engine.IO message
    st.sampled_from("0123456789").flatmap(lambda t: st.text(max_size=40).map(lambda s: t + s)),  # Engine.IO types
    st.text(max_size=200),  # anything, NUL and all
    st.just("4" + "[" * 65_000) | st.just(DEEP_FRAME) | st.just("b" + "A" * 1000),
    st.binary(max_size=300),  # binary frames, and (as text) invalid UTF-8
)


def as_bytes(frame: str | bytes) -> bytes:
    return frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame


async def send_batch(port: int, batch: list[tuple[str | bytes, bool]], user_id: str | None) -> None:
    """Send each frame, opening a new connection whenever the server closed the last one."""
    async with aiohttp.ClientSession() as http:
        sock: RawSocket | None = None
        for frame, as_text in batch:
            if sock is None or sock.closed.is_set():
                if sock is not None:
                    await sock.close()
                sock = await RawSocket.open(http, port)
                if user_id is not None:
                    await sock.authenticate(user_id)
            await sock.send(frame, as_text=as_text)
        await asyncio.sleep(0.05)  # the node handles what arrived before the connection is dropped
        if sock is not None:
            await sock.close()


@FUZZ
@given(batch=st.lists(st.tuples(frames, st.booleans()), min_size=1, max_size=12))
async def test_fuzzed_frames_before_auth_never_hurt_the_node(hostile: Proc, batch):
    await send_batch(hostile.port, batch, None)
    await answers_a_normal_request(hostile)


@FUZZ
@given(batch=st.lists(st.tuples(frames, st.booleans()), min_size=1, max_size=12))
async def test_fuzzed_frames_after_auth_never_hurt_the_node(hostile: Proc, batch):
    await send_batch(hostile.port, batch, uid("fuzz"))
    await answers_a_normal_request(hostile)


@FUZZ
@given(bodies=st.lists(st.binary(max_size=400) | frames.map(as_bytes), min_size=1, max_size=8))
async def test_fuzzed_long_polling_payloads_never_hurt_the_node(hostile: Proc, bodies):
    polling = f"http://127.0.0.1:{hostile.port}{SOCKET_PATH}&transport=polling"
    async with aiohttp.ClientSession() as http:
        for body in bodies:
            async with http.get(polling) as r:
                sid = json.loads((await r.text())[1:])["sid"]
            async with http.post(f"{polling}&sid={sid}", data=body) as r:
                assert r.status < 500, (r.status, body[:200])
    await answers_a_normal_request(hostile)


# Webhook bodies: each provider's shape with fuzzed leaves, arbitrary JSON, and arbitrary bytes.
meta_bodies = st.builds(
    lambda phone, message, extra: {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": phone},
                            "contacts": [{"wa_id": message.get("from")}],
                            "messages": [message],
                            **extra,
                        },
                    }
                ],
            }
        ],
    },
    scalars,
    st.fixed_dictionaries(
        {
            "from": scalars,
            "id": scalars,
            "timestamp": scalars,
            "type": st.just("text") | scalars,
            "text": st.fixed_dictionaries({"body": scalars}) | values,
        }
    ),
    st.dictionaries(st.sampled_from(["statuses", "errors", "messages"]), values, max_size=2),
)
stripe_bodies = st.builds(
    lambda event_id, kind, created, obj: {
        "id": event_id,
        "type": kind,
        "created": created,
        "livemode": False,
        "data": {"object": obj},
    },
    st.just("evt_" + "x" * 8) | scalars,
    st.sampled_from(
        [
            "checkout.session.completed",
            "charge.refunded",
            "invoice.paid",
            "customer.subscription.updated",
            "customer.subscription.deleted",
        ]
    )
    | scalars,
    scalars,
    st.fixed_dictionaries(
        {},
        optional={
            "id": scalars,
            "object": scalars,
            "amount_total": scalars,
            "amount_refunded": scalars,
            "currency": scalars,
            "payment_status": st.just("paid") | scalars,
            "customer": scalars,
            "subscription": scalars,
            "metadata": st.dictionaries(st.sampled_from(["user_id", "pack", "credits"]), scalars) | values,
            "lines": values,
            "status": scalars,
            "current_period_end": scalars,
            "items": values,
        },
    ),
)
lemonsqueezy_bodies = st.builds(
    lambda name, custom, order_id, attributes: {
        "meta": {"event_name": name, "custom_data": custom},
        "data": {"id": order_id, "attributes": attributes},
    },
    st.sampled_from(["order_created", "order_refunded"]) | scalars,
    st.dictionaries(st.sampled_from(["user_id"]), scalars) | values,
    scalars,
    st.fixed_dictionaries(
        {},
        optional={
            "status": scalars,
            "total": scalars,
            "refunded_amount": scalars,
            "currency": scalars,
            "test_mode": scalars,
            "first_order_item": st.dictionaries(st.sampled_from(["variant_id"]), scalars) | values,
        },
    ),
)


def json_body(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(shaped.map(dumps), values.map(dumps), deep, st.text(max_size=100)).map(
        lambda t: t.encode("utf-8", "surrogatepass")
    ) | st.binary(max_size=200)


def twilio_request(fields: dict[str, str], signed: bool) -> tuple[bytes, dict[str, str]]:
    path = "/webhooks/twilio"
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(PUBLIC_BASE_URL + path, fields)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    headers["X-Twilio-Signature"] = signature if signed else "bm90IGEgc2lnbmF0dXJl"
    return urlencode(fields).encode(), headers


webhook_requests = st.one_of(
    st.tuples(
        st.dictionaries(
            st.sampled_from(
                [
                    "From",
                    "To",
                    "Body",
                    "MessageSid",
                    "AccountSid",
                    "NumMedia",
                    "ProfileName",
                    "WaId",
                    "MessageStatus",
                    "SmsStatus",
                    "ErrorCode",
                ]
            )
            | st.text(max_size=8),
            st.text(max_size=60) | st.sampled_from(HUGE) | st.just("\x00"),
        ),
        st.booleans(),
    ).map(lambda t: ("/webhooks/twilio", *twilio_request(*t))),
    st.tuples(json_body(meta_bodies), st.booleans()).map(
        lambda t: (
            "/webhooks/meta",
            t[0],
            {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": meta_signature(t[0]) if t[1] else "sha256=" + "0" * 64,
            },
        )
    ),
    st.tuples(json_body(stripe_bodies), st.booleans()).map(
        lambda t: (
            "/webhooks/stripe",
            t[0],
            {
                "Content-Type": "application/json",
                "Stripe-Signature": stripe_signature(t[0], STRIPE_SECRET if t[1] else "whsec_wrong"),
            },
        )
    ),
    st.tuples(json_body(lemonsqueezy_bodies), st.booleans()).map(
        lambda t: (
            "/webhooks/lemonsqueezy",
            t[0],
            {
                "Content-Type": "application/json",
                "X-Signature": lemonsqueezy_signature(t[0], LEMONSQUEEZY_SECRET if t[1] else "wrong"),
            },
        )
    ),
)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(batch=st.lists(webhook_requests, min_size=1, max_size=10))
async def test_fuzzed_webhooks_never_get_a_500(hostile: Proc, batch):
    async with aiohttp.ClientSession() as http:
        for path, body, headers in batch:
            async with http.post(f"http://127.0.0.1:{hostile.port}{path}", data=body, headers=headers) as r:
                answer = await r.text()
                assert r.status < 500, (path, r.status, answer[:300], body[:300])
    await answers_a_normal_request(hostile)
