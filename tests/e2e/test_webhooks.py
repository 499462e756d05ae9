"""Provider webhooks end to end: real ingress processes, the real broker, signatures as providers make them.

What a webhook enqueued is read straight from the ``chat`` queue of a vhost no worker consumes
(the ``lone`` node), so these tests do not depend on which actors the workers register.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aio_pika
import aiohttp
import pytest

from schemas.commands import inbound_ids
from schemas.queues import CHAT_QUEUE, INBOUND_MESSAGE_ACTOR, STATUS_UPDATE_ACTOR
from tests.support import isolation
from tests.support.isolation import META_APP_SECRET, META_VERIFY_TOKEN, PUBLIC_BASE_URL, TWILIO_AUTH_TOKEN
from tests.support.processes import Processes, free_port
from tests.support.twilio_webhooks import post_twilio, twilio_signature

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
TWILIO_NUMBER = "whatsapp:+14155238886"
PHONE_NUMBER_ID = "106540352242922"
IG_ACCOUNT_ID = "17841405309211844"

SECRETS = {
    "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
    "META_APP_SECRET": META_APP_SECRET,
    "META_VERIFY_TOKEN": META_VERIFY_TOKEN,
    "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
}


@dataclass
class Node:
    port: int
    amqp_url: str

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def lone(iso, stack_env) -> Iterator[Node]:
    """One ingress node publishing into its own vhost, which no worker consumes."""
    vhost = f"{iso.vhost}_webhooks"
    isolation.create_vhost(vhost)
    amqp_url = f"{isolation.AMQP_BASE}/{vhost}"
    procs = Processes({**stack_env, **SECRETS, "AMQP_URL": amqp_url})
    try:
        node = procs.ingress()
        yield Node(node.port, amqp_url)
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


async def drain(amqp_url: str) -> list[dict]:
    """Every message waiting in the ``chat`` queue, decoded (dramatiq's envelope), removed from it."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(CHAT_QUEUE, passive=True)
        out = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            out.append(json.loads(message.body))
        return out


async def queued(amqp_url: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(CHAT_QUEUE, passive=True)
        return queue.declaration_result.message_count


@pytest.fixture
async def empty_queue(lone: Node) -> Node:
    await drain(lone.amqp_url)
    return lone


# --- signing, as the providers do it ------------------------------------------------------------


def meta_body(payload: dict) -> bytes:
    return json.dumps(payload).encode()


def meta_signature(body: bytes, secret: str = META_APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_meta(
    http: aiohttp.ClientSession, url: str, body: bytes, signature: str | None = None
) -> tuple[int, dict | str]:
    headers = {"content-type": "application/json"}
    if signature != "":
        headers["X-Hub-Signature-256"] = signature or meta_signature(body)
    async with http.post(url, data=body, headers=headers) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if resp.content_type == "application/json" else text


# --- payloads shaped like the providers' documented examples -------------------------------------


def twilio_inbound(body: str = "Hola, ¿tienen envíos?", sid: str | None = None) -> dict[str, str]:
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": "Ana López",
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": "5215512345678",
        "SmsStatus": "received",
        "Body": body,
        "To": TWILIO_NUMBER,
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "whatsapp:+5215512345678",
        "ApiVersion": "2010-04-01",
    }


def twilio_status(sid: str, status: str, error_code: str | None = None) -> dict[str, str]:
    form = {
        "SmsSid": sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": "whatsapp:+5215512345678",
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": TWILIO_NUMBER,
        "ApiVersion": "2010-04-01",
    }
    if error_code:
        form["ErrorCode"] = error_code
    return form


def wa_message(i: int, run: str) -> dict:
    return {
        "from": f"1650555{i:04d}",
        "id": f"wamid.{run}.{i}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": f"message {i}"},
    }


def whatsapp_delivery(messages: list[dict], statuses: list[dict] | None = None) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                            "contacts": [
                                {"profile": {"name": f"Contact {m['from']}"}, "wa_id": m["from"]} for m in messages
                            ],
                            "messages": messages,
                            "statuses": statuses or [],
                        },
                    }
                ],
            }
        ],
    }


def instagram_delivery(run: str) -> dict:
    return {
        "object": "instagram",
        "entry": [
            {
                "id": IG_ACCOUNT_ID,
                "time": int(time.time() * 1000),
                "messaging": [
                    {
                        "sender": {"id": "1254477691247389"},
                        "recipient": {"id": IG_ACCOUNT_ID},
                        "timestamp": int(time.time() * 1000),
                        "message": {"mid": f"aWdf.{run}.in", "text": "Is the blue one available?"},
                    },
                    {
                        "sender": {"id": IG_ACCOUNT_ID},
                        "recipient": {"id": "1254477691247389"},
                        "timestamp": int(time.time() * 1000),
                        "message": {"mid": f"aWdf.{run}.echo", "text": "Yes!", "is_echo": True},
                    },
                ],
            }
        ],
    }


def commands(messages: list[dict]) -> list[tuple[str, dict]]:
    return [(m["actor_name"], m["kwargs"]["command"]) for m in messages]


# --- Twilio ---------------------------------------------------------------------------------------


async def test_twilio_inbound_is_enqueued_once_and_a_replay_is_not(empty_queue: Node, http):
    form = twilio_inbound()
    status, content_type, text = await post_twilio(http, empty_queue.url("/webhooks/twilio"), form)
    assert (status, content_type, text) == (200, "text/xml", EMPTY_TWIML)
    ((actor, command),) = commands(await drain(empty_queue.amqp_url))
    command_id, message_id = inbound_ids("twilio", form["MessageSid"])
    assert actor == INBOUND_MESSAGE_ACTOR
    assert command["command_id"] == command_id and command["message_id"] == message_id
    assert (command["channel"], command["address"], command["contact"], command["contact_name"], command["text"]) == (
        "twilio_whatsapp",
        "+14155238886",
        "+5215512345678",
        "Ana López",
        "Hola, ¿tienen envíos?",
    )

    # Twilio retries (it did not see our answer): acknowledged again, not published again.
    assert (await post_twilio(http, empty_queue.url("/webhooks/twilio"), form))[0] == 200
    assert await drain(empty_queue.amqp_url) == []


async def test_twilio_status_callback_is_enqueued_as_a_status_update(empty_queue: Node, http):
    sid = "SM" + uuid.uuid4().hex
    for status in ("sent", "undelivered", "undelivered"):
        code = "63016" if status == "undelivered" else None
        assert (await post_twilio(http, empty_queue.url("/webhooks/twilio"), twilio_status(sid, status, code)))[
            0
        ] == 200
    got = commands(await drain(empty_queue.amqp_url))
    assert [(a, c["command_id"], c["error_code"]) for a, c in got] == [
        (STATUS_UPDATE_ACTOR, f"status:twilio:{sid}:sent", None),
        (STATUS_UPDATE_ACTOR, f"status:twilio:{sid}:undelivered", "63016"),
    ]


async def test_twilio_signature_covers_the_public_url_and_the_params(empty_queue: Node, http, stack):
    form = twilio_inbound()
    url = empty_queue.url("/webhooks/twilio")
    internal = twilio_signature("/webhooks/twilio", form, base=f"http://127.0.0.1:{empty_queue.port}")
    tampered = twilio_signature("/webhooks/twilio", {**form, "Body": "something else"})
    for signature, expected in [
        ("", 403),  # missing
        ("not-a-signature", 403),
        (internal, 403),  # signed for the URL the node sees, not the one Twilio called
        (twilio_signature("/webhooks/twilio", form, token="another-account-token"), 403),
        (tampered, 403),
    ]:
        status, content_type, text = await post_twilio(http, url, form, signature)
        assert (status, content_type) == (expected, "application/json"), text
        assert json.loads(text)["error"]["code"] == "forbidden"
    assert await queued(empty_queue.amqp_url) == 0

    # The query string is part of the signed URL.
    path = "/webhooks/twilio?tenant=acme"
    status, _, _ = await post_twilio(http, empty_queue.url(path), form, twilio_signature(path, form))
    assert status == 200
    assert len(await drain(empty_queue.amqp_url)) == 1

    # The stack's nodes check the same way.
    for node in range(2):
        assert (await post_twilio(http, stack.url("/webhooks/twilio", node), twilio_inbound(), internal))[0] == 403
        assert (await post_twilio(http, stack.url("/webhooks/twilio", node), twilio_inbound()))[0] == 200


@pytest.mark.parametrize("missing", ["MessageSid", "From", "To"])
async def test_a_malformed_twilio_form_with_a_valid_signature_is_400(empty_queue: Node, http, missing):
    form = {k: v for k, v in twilio_inbound().items() if k != missing}
    status, _, text = await post_twilio(http, empty_queue.url("/webhooks/twilio"), form)
    assert status == 400, text
    assert json.loads(text)["error"]["code"] == "bad_request"
    assert await queued(empty_queue.amqp_url) == 0


# --- Meta -----------------------------------------------------------------------------------------


async def test_meta_subscription_handshake(stack, http):
    def query(mode: str = "subscribe", token: str | None = META_VERIFY_TOKEN) -> dict[str, str]:
        q = {"hub.mode": mode, "hub.challenge": "1158201444"}
        if token is not None:
            q["hub.verify_token"] = token
        return q

    async with http.get(stack.url("/webhooks/meta"), params=query()) as resp:
        assert (resp.status, resp.content_type, await resp.text()) == (200, "text/plain", "1158201444")
    for bad in (query(token="wrong"), query(token=""), query(token=None), query(mode="unsubscribe")):
        async with http.get(stack.url("/webhooks/meta", 1), params=bad) as resp:
            assert resp.status == 403, bad


async def test_meta_signature_missing_is_401_and_bad_is_403(empty_queue: Node, http):
    body = meta_body(whatsapp_delivery([wa_message(1, uuid.uuid4().hex)]))
    url = empty_queue.url("/webhooks/meta")
    assert (await post_meta(http, url, body, signature=""))[0] == 401
    assert (await post_meta(http, url, body, meta_signature(body, "another-app-secret")))[0] == 403
    assert (await post_meta(http, url, body, meta_signature(body + b" ")))[0] == 403
    assert (await post_meta(http, url, body, "sha1=" + hashlib.sha1(body).hexdigest()))[0] == 403
    assert await queued(empty_queue.amqp_url) == 0
    bad_json = b'{"object": "whatsapp_business_account", "entry": ['
    status, reply = await post_meta(http, url, bad_json)
    assert status == 400 and reply["error"]["code"] == "bad_request"
    assert await queued(empty_queue.amqp_url) == 0


async def test_a_batch_of_50_whatsapp_messages_is_enqueued_in_one_post(empty_queue: Node, http):
    run = uuid.uuid4().hex
    messages = [wa_message(i, run) for i in range(50)]
    status_update = {"id": f"wamid.{run}.out", "status": "delivered", "recipient_id": "16505550001"}
    body = meta_body(whatsapp_delivery(messages, [status_update]))
    status, reply = await post_meta(http, empty_queue.url("/webhooks/meta"), body)
    assert (status, reply) == (200, {"received": 51, "duplicates": 0, "skipped": 0})
    got = commands(await drain(empty_queue.amqp_url))
    inbound = sorted(c["command_id"] for a, c in got if a == INBOUND_MESSAGE_ACTOR)
    assert inbound == sorted(f"meta:wamid.{run}.{i}" for i in range(50))
    assert [c["command_id"] for a, c in got if a == STATUS_UPDATE_ACTOR] == [f"status:meta:wamid.{run}.out:delivered"]
    first = next(c for _, c in got if c["command_id"] == f"meta:wamid.{run}.0")
    assert (first["channel"], first["address"], first["contact"], first["contact_name"]) == (
        "meta_whatsapp",
        PHONE_NUMBER_ID,
        "16505550000",
        "Contact 16505550000",
    )

    # Meta redelivers the whole batch: nothing is published again.
    status, reply = await post_meta(http, empty_queue.url("/webhooks/meta"), body)
    assert (status, reply) == (200, {"received": 0, "duplicates": 51, "skipped": 0})
    # A later batch overlapping the first: only the new ones go out.
    more = meta_body(whatsapp_delivery(messages[40:] + [wa_message(i, run) for i in range(50, 60)]))
    status, reply = await post_meta(http, empty_queue.url("/webhooks/meta"), more)
    assert (status, reply) == (200, {"received": 10, "duplicates": 10, "skipped": 0})
    assert await queued(empty_queue.amqp_url) == 10


async def test_instagram_messages_are_enqueued_and_echoes_and_unknown_objects_skipped(empty_queue: Node, http):
    run = uuid.uuid4().hex
    status, reply = await post_meta(http, empty_queue.url("/webhooks/meta"), meta_body(instagram_delivery(run)))
    assert (status, reply) == (200, {"received": 1, "duplicates": 0, "skipped": 1})
    ((actor, command),) = commands(await drain(empty_queue.amqp_url))
    assert (actor, command["command_id"], command["channel"], command["address"], command["contact"]) == (
        INBOUND_MESSAGE_ACTOR,
        f"meta:aWdf.{run}.in",
        "instagram",
        IG_ACCOUNT_ID,
        "1254477691247389",
    )
    page = meta_body({"object": "page", "entry": [{"id": "1", "time": 1, "messaging": []}]})
    assert await post_meta(http, empty_queue.url("/webhooks/meta"), page) == (
        200,
        {"received": 0, "duplicates": 0, "skipped": 1},
    )
    assert await queued(empty_queue.amqp_url) == 0


async def test_nodes_share_the_dedupe(stack, http):
    body = meta_body(whatsapp_delivery([wa_message(1, uuid.uuid4().hex)]))
    assert await post_meta(http, stack.url("/webhooks/meta", 0), body) == (
        200,
        {"received": 1, "duplicates": 0, "skipped": 0},
    )
    assert await post_meta(http, stack.url("/webhooks/meta", 1), body) == (
        200,
        {"received": 0, "duplicates": 1, "skipped": 0},
    )


# --- configuration and failure ---------------------------------------------------------------------


async def test_an_unconfigured_node_answers_503_and_enqueues_nothing(lone: Node, stack_env, http):
    await drain(lone.amqp_url)
    blank = {"TWILIO_AUTH_TOKEN": "", "META_APP_SECRET": "", "META_VERIFY_TOKEN": ""}
    procs = Processes({**stack_env, **SECRETS, **blank, "AMQP_URL": lone.amqp_url})
    try:
        node = procs.ingress()
        url = f"http://127.0.0.1:{node.port}"
        status, _, text = await post_twilio(http, url + "/webhooks/twilio", twilio_inbound())
        assert (status, json.loads(text)["error"]["code"]) == (503, "not_configured")
        body = meta_body(whatsapp_delivery([wa_message(1, uuid.uuid4().hex)]))
        status, reply = await post_meta(http, url + "/webhooks/meta", body)
        assert (status, reply["error"]["code"]) == (503, "not_configured")
        params = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
        async with http.get(url + "/webhooks/meta", params=params) as resp:
            assert resp.status == 403  # an empty verify token never matches
    finally:
        procs.stop_all()
    assert await queued(lone.amqp_url) == 0


async def test_broker_down_is_503_and_the_retry_is_accepted(lone: Node, stack_env, http):
    """No 2xx without a confirm; and the failed attempt must not be remembered as accepted."""
    await drain(lone.amqp_url)
    procs = Processes({**stack_env, **SECRETS, "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"})
    form = twilio_inbound()
    run = uuid.uuid4().hex
    body = meta_body(whatsapp_delivery([wa_message(i, run) for i in range(5)]))
    try:
        down = procs.ingress(require_healthy=False)
        url = f"http://127.0.0.1:{down.port}"
        started = time.monotonic()
        status, _, text = await post_twilio(http, url + "/webhooks/twilio", form)
        assert status == 503, text
        assert time.monotonic() - started < 10
        status, reply = await post_meta(http, url + "/webhooks/meta", body)
        assert status == 503, reply
    finally:
        procs.stop_all()

    # The provider retries against a healthy node (same Redis namespace): accepted and enqueued.
    status, _, _ = await post_twilio(http, lone.url("/webhooks/twilio"), form)
    assert status == 200
    assert await post_meta(http, lone.url("/webhooks/meta"), body) == (
        200,
        {"received": 5, "duplicates": 0, "skipped": 0},
    )
    got = sorted(c["command_id"] for _, c in commands(await drain(lone.amqp_url)))
    assert got == sorted([f"twilio:{form['MessageSid']}", *(f"meta:wamid.{run}.{i}" for i in range(5))])
