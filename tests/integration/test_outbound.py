"""Outbound delivery against the real PostgreSQL and the fake Twilio and Meta servers.

The adapters use the real ``twilio`` library and aiohttp over loopback; only the provider is fake.
"""

from __future__ import annotations

import asyncio
import uuid
from email.utils import formatdate

import asyncpg
import pytest
from pydantic import SecretStr

from domain.channels import Channel, conversation_room
from schemas.channels import tenant_channel
from tests.support.fake_providers import FakeMeta, FakeTwilio, Reply
from tests.support.outbound_rows import IG_ACCOUNT_ID, TWILIO_NUMBER, WA_PHONE_NUMBER_ID, insert_outbound
from workers import outbound_service
from workers.outbound_service import InvalidCommand, OutboundMissing, SendLocks
from workers.providers import Providers, RetryPolicy, parse_retry_after

MAX_ATTEMPTS = 3


async def outbound_row(pool: asyncpg.Pool, message_id: str) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT status, provider_message_id, error_code, error_message, attempts FROM outbound_messages"
        " WHERE message_id = $1",
        uuid.UUID(message_id),
    )


def provider_settings(settings, twilio: FakeTwilio, meta: FakeMeta, **overrides):
    """The test run's settings, pointed at the fakes."""
    return settings.model_copy(
        update={
            "twilio_account_sid": twilio.account_sid,
            "twilio_auth_token": SecretStr(twilio.auth_token),
            "twilio_api_base_url": twilio.url,
            "meta_graph_url": meta.url,
            "meta_access_token": SecretStr(meta.access_token),
            **overrides,
        }
    )


@pytest.fixture
async def twilio():
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def meta():
    async with FakeMeta() as fake:
        yield fake


@pytest.fixture
async def providers(settings, twilio, meta):
    p = Providers(
        provider_settings(settings, twilio, meta),
        RetryPolicy(max_attempts=MAX_ATTEMPTS, timeout_s=2.0, backoff_base_s=0.05, backoff_cap_s=5.0),
    )
    yield p
    await p.close()


@pytest.fixture
async def locks(iso):
    held = SendLocks(iso.database_url)
    yield held
    await held.close()


async def deliver(pool, locks, providers, message_id, max_claims: int = MAX_ATTEMPTS):
    return await outbound_service.deliver(pool, locks, providers.send, message_id, max_claims)


# --- Twilio ---------------------------------------------------------------------------------


async def test_twilio_whatsapp_is_sent_once_and_a_redelivery_sends_nothing(ledger, locks, providers, twilio, settings):
    msg = await insert_outbound(ledger, Channel.TWILIO_WHATSAPP, TWILIO_NUMBER, "+34600111222")

    outcome = await deliver(ledger, locks, providers, msg.message_id)

    assert outcome.status == "sent"
    [request] = twilio.requests
    assert outcome.provider_message_id == request.provider_id and request.provider_id.startswith("SM")
    assert request.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert request.fields == {
        "To": "whatsapp:+34600111222",
        "From": f"whatsapp:{TWILIO_NUMBER}",
        "Body": msg.body,
        "StatusCallback": settings.public_base_url.rstrip("/") + "/webhooks/twilio",
    }
    row = await outbound_row(ledger, msg.message_id)
    assert (row["status"], row["provider_message_id"], row["attempts"]) == ("sent", request.provider_id, 1)
    assert outcome.emits == [
        {
            "event": "messageStatus",
            "room": msg.room,
            "data": {
                "messageId": msg.message_id,
                "roomId": conversation_room(msg.tenant_id, msg.conversation_id),
                "status": "sent",
                "errorCode": None,
                "errorMessage": None,
            },
        }
    ]

    again = await deliver(ledger, locks, providers, msg.message_id)
    assert again.status == "duplicate" and again.provider_message_id == request.provider_id
    assert [e["data"]["status"] for e in again.emits] == ["sent"]  # the stored status, published again
    assert len(twilio.requests) == 1
    assert (await outbound_row(ledger, msg.message_id))["attempts"] == 1


async def test_429_then_success_honours_retry_after_and_sends_once(ledger, locks, providers, twilio):
    msg = await insert_outbound(ledger, Channel.TWILIO_SMS, TWILIO_NUMBER, "+34600111333")
    twilio.script(Reply.too_many(retry_after=1))

    outcome = await deliver(ledger, locks, providers, msg.message_id)

    assert outcome.status == "sent"
    first, second = twilio.requests
    assert (first.status, second.status) == (429, 201)
    assert first.fields["To"] == "+34600111333" and first.fields["From"] == TWILIO_NUMBER  # SMS: bare numbers
    assert second.started - first.finished >= 0.95, "Retry-After: 1 was not honoured"
    row = await outbound_row(ledger, msg.message_id)
    assert (row["status"], row["provider_message_id"], row["attempts"]) == ("sent", second.provider_id, 1)


async def test_a_permanent_4xx_fails_at_once_with_the_providers_code(ledger, locks, providers, twilio):
    msg = await insert_outbound(ledger, Channel.TWILIO_SMS, TWILIO_NUMBER, "+1555not-a-number")

    outcome = await deliver(ledger, locks, providers, msg.message_id)

    assert outcome.status == "failed" and outcome.error_code == "21211"
    assert len(twilio.requests) == 1
    row = await outbound_row(ledger, msg.message_id)
    assert (row["status"], row["error_code"], row["provider_message_id"]) == ("failed", "21211", None)
    assert "Invalid 'To' Phone Number" in row["error_message"]
    assert [e["room"] for e in outcome.emits] == [msg.room, tenant_channel(msg.tenant_id)]
    assert {e["data"]["errorCode"] for e in outcome.emits} == {"21211"}
    assert {e["data"]["status"] for e in outcome.emits} == {"failed"}


async def test_5xx_until_the_attempts_are_exhausted_fails(ledger, locks, providers, twilio):
    msg = await insert_outbound(ledger, Channel.TWILIO_SMS, TWILIO_NUMBER, "+34600111444")
    twilio.script(*[Reply.server_error()] * MAX_ATTEMPTS, to="+34600111444")

    outcome = await deliver(ledger, locks, providers, msg.message_id)

    assert outcome.status == "failed" and outcome.error_code == "20500"
    assert [r.status for r in twilio.requests] == [500] * MAX_ATTEMPTS
    row = await outbound_row(ledger, msg.message_id)
    assert (row["status"], row["error_code"], row["attempts"]) == ("failed", "20500", 1)


async def test_a_slow_provider_times_out_each_attempt_then_fails(ledger, locks, settings, twilio, meta):
    msg = await insert_outbound(ledger, Channel.TWILIO_SMS, TWILIO_NUMBER, "+34600111555")
    twilio.delay_s = 1.0
    slow = Providers(provider_settings(settings, twilio, meta), RetryPolicy(2, timeout_s=0.2, backoff_base_s=0.05))
    try:
        outcome = await outbound_service.deliver(ledger, locks, slow.send, msg.message_id, MAX_ATTEMPTS)
    finally:
        await slow.close()
    assert outcome.status == "failed" and outcome.error_code == "timeout"
    assert len(twilio.requests) == 2


# --- Meta -----------------------------------------------------------------------------------


async def test_meta_whatsapp_and_instagram_send_the_graph_payloads(ledger, locks, providers, meta, settings):
    wa = await insert_outbound(ledger, Channel.META_WHATSAPP, WA_PHONE_NUMBER_ID, "34600111666")
    ig = await insert_outbound(ledger, Channel.INSTAGRAM, IG_ACCOUNT_ID, "6543210987654321")

    sent_wa = await deliver(ledger, locks, providers, wa.message_id)
    sent_ig = await deliver(ledger, locks, providers, ig.message_id)

    assert (sent_wa.status, sent_ig.status) == ("sent", "sent")
    req_wa, req_ig = meta.requests
    version = settings.meta_graph_version
    assert req_wa.path == f"/{version}/{WA_PHONE_NUMBER_ID}/messages"
    assert req_wa.fields == {
        "messaging_product": "whatsapp",
        "to": "34600111666",
        "type": "text",
        "text": {"body": wa.body},
    }
    assert req_ig.path == f"/{version}/{IG_ACCOUNT_ID}/messages"
    assert req_ig.fields == {"recipient": {"id": "6543210987654321"}, "message": {"text": ig.body}}
    assert req_wa.headers["Authorization"] == f"Bearer {meta.access_token}"
    assert sent_wa.provider_message_id == req_wa.provider_id and req_wa.provider_id.startswith("wamid.")
    assert sent_ig.provider_message_id == req_ig.provider_id and req_ig.provider_id.startswith("m_")
    assert (await outbound_row(ledger, ig.message_id))["provider_message_id"] == req_ig.provider_id


async def test_meta_131026_is_permanent_and_a_throttling_400_is_retried(ledger, locks, providers, meta):
    undeliverable = await insert_outbound(ledger, Channel.META_WHATSAPP, WA_PHONE_NUMBER_ID, "34600111777")
    throttled = await insert_outbound(ledger, Channel.META_WHATSAPP, WA_PHONE_NUMBER_ID, "34600111888")
    meta.script(Reply.meta_error(400, 131026, "Message undeliverable"), to="34600111777")
    meta.script(Reply.meta_error(400, 130429, "Rate limit hit"), to="34600111888")

    failed = await deliver(ledger, locks, providers, undeliverable.message_id)
    sent = await deliver(ledger, locks, providers, throttled.message_id)

    assert failed.status == "failed" and failed.error_code == "131026"
    assert meta.count(key="34600111777") == 1
    row = await outbound_row(ledger, undeliverable.message_id)
    assert (row["status"], row["error_code"], row["error_message"]) == ("failed", "131026", "Message undeliverable")
    assert sent.status == "sent" and meta.count(key="34600111888") == 2


# --- at most one send in flight, and what a crash leaves ------------------------------------


async def test_duplicates_delivered_at_once_make_one_request(ledger, locks, providers, twilio, iso):
    twilio.delay_s = 0.3
    msg = await insert_outbound(ledger, Channel.TWILIO_SMS, TWILIO_NUMBER, "+34600111999")
    other_process = SendLocks(iso.database_url)  # another worker process: its own lock connection
    try:
        outcomes = await asyncio.gather(
            deliver(ledger, locks, providers, msg.message_id),
            deliver(ledger, locks, providers, msg.message_id),
            deliver(ledger, other_process, providers, msg.message_id),
            deliver(ledger, other_process, providers, msg.message_id),
        )
    finally:
        await other_process.close()
    assert sorted(o.status for o in outcomes) == ["busy", "busy", "busy", "sent"]
    assert len(twilio.requests) == 1
    assert (await outbound_row(ledger, msg.message_id))["attempts"] == 1


async def test_a_dead_holders_lock_is_released_with_its_connection(ledger, iso):
    message_id = uuid.uuid4()
    holder, other = SendLocks(iso.database_url), SendLocks(iso.database_url)
    try:
        async with holder.hold(message_id) as held:
            assert held
            async with other.hold(message_id) as also:
                assert not also
            holder._conn.terminate()  # what kill -9 does to the holder's connection
            await asyncio.sleep(0.2)
            async with other.hold(message_id) as after:
                assert after
    finally:
        await holder.close()
        await other.close()


async def test_a_claim_left_by_a_crash_is_sent_again_and_claims_are_bounded(ledger, locks, providers, twilio):
    # A worker died after claiming (status 'sending', no provider id): the redelivery sends.
    crashed = await insert_outbound(
        ledger, Channel.TWILIO_SMS, TWILIO_NUMBER, "+34600222111", status="sending", attempts=1
    )
    outcome = await deliver(ledger, locks, providers, crashed.message_id)
    assert outcome.status == "sent" and twilio.count(text=crashed.body) == 1
    assert (await outbound_row(ledger, crashed.message_id))["attempts"] == 2

    # Claimed MAX_ATTEMPTS times already without an outcome: failed, not sent again.
    looping = await insert_outbound(
        ledger, Channel.TWILIO_SMS, TWILIO_NUMBER, "+34600222222", status="sending", attempts=MAX_ATTEMPTS
    )
    outcome = await deliver(ledger, locks, providers, looping.message_id)
    assert outcome.status == "failed" and outcome.error_code == "unconfirmed"
    assert twilio.count(text=looping.body) == 0
    assert [e["room"] for e in outcome.emits] == [looping.room, tenant_channel(looping.tenant_id)]


async def test_a_missing_row_or_a_bad_id_raises(ledger, locks, providers, twilio):
    with pytest.raises(OutboundMissing):
        await deliver(ledger, locks, providers, str(uuid.uuid4()))
    with pytest.raises(InvalidCommand):
        await deliver(ledger, locks, providers, "not-a-uuid")
    assert not twilio.requests


async def test_a_command_that_gave_up_fails_its_unsent_message_only(ledger, locks, providers, twilio):
    queued = await insert_outbound(ledger, Channel.TWILIO_SMS, TWILIO_NUMBER, "+34600333111")
    failed = await outbound_service.fail_unsent(ledger, locks, queued.message_id, "internal", "boom")
    assert failed.status == "failed" and {e["data"]["errorCode"] for e in failed.emits} == {"internal"}

    sent = await insert_outbound(ledger, Channel.TWILIO_SMS, TWILIO_NUMBER, "+34600333222")
    await deliver(ledger, locks, providers, sent.message_id)
    untouched = await outbound_service.fail_unsent(ledger, locks, sent.message_id, "internal", "boom")
    assert untouched.status == "duplicate" and not untouched.emits
    assert (await outbound_row(ledger, sent.message_id))["status"] == "sent"


async def test_retry_after_in_seconds_or_as_an_http_date():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(formatdate(1_000_030, usegmt=True), now=1_000_000) == 30.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
