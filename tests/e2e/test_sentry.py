"""A worker's error reaches a (local, fake) Sentry with release and environment, scrubbed."""

from __future__ import annotations

import json
import time

import pytest

from schemas.commands import SendChatMessage, send_command_ids
from schemas.queues import CHAT_QUEUE, SEND_MESSAGE_ACTOR
from tests.support import isolation
from tests.support.amqp import publish_commands
from tests.support.fake_sentry import FakeSentry
from tests.support.processes import Processes

SECRET_TEXT = "mi tarjeta termina en 4242, llámame al +34 612 345 678"


@pytest.fixture
async def fake_sentry():
    fake = await FakeSentry().start()
    yield fake
    await fake.close()


@pytest.fixture
def sentry_stack(iso, stack_env, fake_sentry):
    """A chat pool reporting to the fake Sentry, in a vhost of its own."""
    vhost = f"{iso.vhost}_sentry"
    isolation.create_vhost(vhost)
    env = {
        **stack_env,
        "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
        "SENTRY_DSN": fake_sentry.dsn,
        "SENTRY_ENVIRONMENT": "e2e",
        "SENTRY_RELEASE": "gatekeeper@test",
    }
    procs = Processes(env)
    try:
        procs.workers("chat", processes=1, threads=2)
        yield env
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


async def test_a_failing_command_is_reported_scrubbed(sentry_stack, fake_sentry):
    user = f"sentry-{time.time_ns()}"
    command_id, message_id = send_command_ids(user, None)
    poison = SendChatMessage(  # PostgreSQL refuses NUL in text: the worker fails on it
        command_id=command_id,
        message_id=message_id,
        user_id=user,
        username=user,
        room_id="room\x00",
        message=SECRET_TEXT,
        client_message_id=None,
        accepted_at_ms=int(time.time() * 1000),
    )
    await publish_commands(sentry_stack["AMQP_URL"], CHAT_QUEUE, SEND_MESSAGE_ACTOR, [poison])

    event = await fake_sentry.wait_for_event(timeout=60)
    assert event["release"] == "gatekeeper@test" and event["environment"] == "e2e"
    assert event["tags"]["service"] == "workers"
    exceptions = [value["type"] for value in event["exception"]["values"]]
    assert "CharacterNotInRepertoireError" in exceptions
    sent = b"".join(fake_sentry.raw_bodies).decode("utf-8", "replace") + json.dumps(fake_sentry.events)
    for secret in ("4242", "612 345 678", "tarjeta"):
        assert secret not in sent
