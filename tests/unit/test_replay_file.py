"""The replay's JSON Lines reader, the actor registry it validates against, and the event log's pure parts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from urllib.parse import urlencode

import pytest

from infra.event_log import Mark, entry_for, subjects, verdict
from schemas.actors import ACTORS
from schemas.commands import inbound_ids
from schemas.queues import (
    BILLING_QUEUE,
    CHAT_QUEUE,
    INBOUND_MESSAGE_ACTOR,
    LEMONSQUEEZY_ORDER_ACTOR,
    SEND_MESSAGE_ACTOR,
    STATUS_UPDATE_ACTOR,
    STRIPE_PAYMENT_ACTOR,
)
from scripts.replay_file import BadLine, parse_line, read_lines
from tests.support.webhook_payloads import WHATSAPP_DELIVERY

SEND = {
    "command_id": "msg:alice:c1",
    "message_id": "0b8f4c55-3f41-4a8e-9a54-0d0b5c0f2a11",
    "user_id": "alice",
    "username": "Alice",
    "room_id": "lobby",
    "message": "hola",
    "accepted_at_ms": 1,
}
TWILIO_FORM = {"MessageSid": "SM123", "From": "whatsapp:+34600000001", "To": "whatsapp:+15550001111", "Body": "hi"}
STRIPE_EVENT = {"id": "evt_1", "type": "checkout.session.completed", "created": 5, "data": {"object": {"id": "cs_1"}}}
LEMON_ORDER = {
    "meta": {"event_name": "order_created", "custom_data": {"user_id": "bob"}},
    "data": {
        "id": 42,
        "attributes": {"status": "paid", "total": 500, "currency": "USD", "first_order_item": {"variant_id": 111}},
    },
}


def line(obj: object) -> str:
    return json.dumps(obj)


def test_a_command_line_is_validated_against_its_actor_model():
    (job,) = parse_line(line({"queue": CHAT_QUEUE, "actor": SEND_MESSAGE_ACTOR, "command": SEND}))
    assert (job.queue, job.actor, job.command_id, job.command_type) == (
        CHAT_QUEUE,
        SEND_MESSAGE_ACTOR,
        "msg:alice:c1",
        "chat.send_message",
    )
    assert job.payload["client_message_id"] is None  # the model's defaults are filled in


def test_a_command_logged_from_a_chat_partition_is_replayed_to_plain_chat():
    (job,) = parse_line(line({"queue": "chat.p2", "actor": SEND_MESSAGE_ACTOR, "command": SEND}))
    assert (job.queue, job.actor, job.command_id) == (CHAT_QUEUE, SEND_MESSAGE_ACTOR, "msg:alice:c1")
    with pytest.raises(BadLine, match="consumes queue"):
        parse_line(line({"queue": "billing", "actor": SEND_MESSAGE_ACTOR, "command": SEND}))


def test_replay_queue_filter_covers_chat_partitions():
    from infra.event_log import Filters
    from scripts.replay import filters_of, parse_args

    chat = filters_of(parse_args(["--since", "2026-11-23T10:00", "--queue", "chat"]))
    assert chat is not None and chat.queues == ("chat", "chat.p0", "chat.p1", "chat.p2", "chat.p3")
    one = filters_of(parse_args(["--since", "2026-11-23T10:00", "--queue", "chat.p1"]))
    assert one is not None and one.queues == ("chat.p1",)
    every = filters_of(parse_args(["--since", "2026-11-23T10:00"]))
    assert every is not None and every.queues == ()
    args: list = []
    assert Filters(queues=("chat", "chat.p0")).where(args) == "queue_name = ANY($1::text[])"
    assert args == [["chat", "chat.p0"]]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "a line must be a JSON object"),
        (line({"queue": CHAT_QUEUE, "actor": "chat_delete_everything", "command": SEND}), "unknown actor"),
        (line({"queue": BILLING_QUEUE, "actor": SEND_MESSAGE_ACTOR, "command": SEND}), "consumes queue 'chat'"),
        (line({"queue": CHAT_QUEUE, "actor": SEND_MESSAGE_ACTOR, "command": {**SEND, "room_id": 7}}), "room_id"),
        (line({"queue": CHAT_QUEUE, "actor": SEND_MESSAGE_ACTOR, "command": {**SEND, "extra": 1}}), "extra"),
        (line({"queue": CHAT_QUEUE, "actor": SEND_MESSAGE_ACTOR}), "a line is a command"),
        (line({"webhook": "paypal", "body": {}}), "unknown webhook provider 'paypal'"),
        (line({"webhook": "twilio", "body": {"From": "x"}}), "MessageSid is missing"),
        (line({"webhook": "stripe", "body": {**STRIPE_EVENT, "type": "customer.created"}}), "moves no credits"),
        (line({"webhook": "stripe", "body": {"id": "evt_2", "type": "charge.refunded"}}), "no data.object"),
        (line({"webhook": "meta", "body": {"object": "page", "entry": []}}), "unknown_object"),
        (line({"webhook": "lemonsqueezy", "body": {"meta": {"event_name": "subscription_created"}}}), "not a"),
    ],
)
def test_a_bad_line_says_why(text, reason):
    with pytest.raises(BadLine, match=re.escape(reason)):
        parse_line(text)


def test_a_twilio_webhook_is_parsed_as_ingress_parses_it_from_an_object_or_the_raw_form():
    (from_object,) = parse_line(line({"webhook": "twilio", "body": TWILIO_FORM, "received_at_ms": 7}))
    (from_text,) = parse_line(line({"webhook": "twilio", "body": urlencode(TWILIO_FORM), "received_at_ms": 7}))
    assert from_object == from_text
    assert (from_object.queue, from_object.actor) == (CHAT_QUEUE, INBOUND_MESSAGE_ACTOR)
    assert from_object.command_id == inbound_ids("twilio", "SM123")[0]  # a replay of it is a duplicate
    assert from_object.payload["received_at_ms"] == 7


def test_a_meta_delivery_gives_every_command_it_holds():
    jobs = parse_line(line({"webhook": "meta", "body": json.dumps(WHATSAPP_DELIVERY)}))  # the raw body text
    assert [j.actor for j in jobs] == [INBOUND_MESSAGE_ACTOR, INBOUND_MESSAGE_ACTOR, STATUS_UPDATE_ACTOR]


def test_payment_webhooks_go_to_their_billing_actors():
    (stripe_job,) = parse_line(line({"webhook": "stripe", "body": STRIPE_EVENT}))
    assert (stripe_job.queue, stripe_job.actor, stripe_job.command_id) == (
        BILLING_QUEUE,
        STRIPE_PAYMENT_ACTOR,
        "stripe:evt_1",
    )
    (lemon_job,) = parse_line(line({"webhook": "lemonsqueezy", "body": LEMON_ORDER}))
    assert (lemon_job.actor, lemon_job.payload["user_id"], lemon_job.payload["variant_id"]) == (
        LEMONSQUEEZY_ORDER_ACTOR,
        "bob",
        "111",
    )


def test_bad_lines_are_numbered_and_do_not_stop_the_rest():
    text = [
        line({"queue": CHAT_QUEUE, "actor": SEND_MESSAGE_ACTOR, "command": SEND}),
        "",
        "{oops",
        line({"webhook": "twilio", "body": TWILIO_FORM}),
        line({"queue": CHAT_QUEUE, "actor": "nope", "command": SEND}),
    ]
    jobs, bad = read_lines(iter(t + "\n" for t in text))
    assert [j.command_id for j in jobs] == ["msg:alice:c1", "twilio:SM123"]
    assert [n for n, _ in bad] == [3, 5]


def test_the_registry_matches_the_actors_the_workers_register():
    env = {k: v for k, v in os.environ.items() if k not in ("WORKER_METRICS_PORT", "SENTRY_DSN")}
    env.update(JWT_SECRET="x" * 32, ADMIN_TOKEN="y" * 32, LOG_LEVEL="ERROR")  # importing the actors connects nowhere
    code = (
        "import json, dramatiq, workers.broker;"
        "b = dramatiq.get_broker();"
        "print(json.dumps({n: b.get_actor(n).queue_name for n in b.get_declared_actors()}))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    registered = json.loads(done.stdout.strip().splitlines()[-1])
    assert registered == {name: spec.queue for name, spec in ACTORS.items()}


def test_subjects_find_the_user_and_tenant_of_any_command():
    assert subjects({"user_id": "alice"}) == ("alice", None)
    assert subjects({"asker": "user:bob", "asker_user_id": None, "tenant_id": None}) == ("bob", None)
    assert subjects({"asker": "tenant:shop"}) == (None, "shop")
    assert subjects({"operator_id": "olga", "tenant_id": "shop"}) == ("olga", "shop")
    assert subjects({"sender_id": "carol"}) == ("carol", None)
    assert entry_for(CHAT_QUEUE, SEND_MESSAGE_ACTOR, {"type": "x"}, "applied") is None  # no command id


def test_the_verdict_is_the_latest_new_delivery():
    failed = Mark("failed", "failed", 1, 0, "boom")
    assert verdict(failed, failed) == "pending"
    assert verdict(None, None) == "pending"
    assert verdict(failed, Mark("applied", "applied", 2, 0, "boom")) == "re-applied"
    assert verdict(failed, Mark("failed", "failed", 2, 0, "boom again")) == "failed"
    applied = Mark("applied", "applied", 1, 0, None)
    assert verdict(applied, Mark("applied", "duplicate", 2, 1, None)) == "no-op"
    assert verdict(None, Mark("applied", "applied", 1, 0, None)) == "re-applied"
