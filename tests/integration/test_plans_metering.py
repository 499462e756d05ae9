"""AI usage to Stripe meter events: the real ``stripe`` client against a local fake Stripe API."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from domain.plans import PlanCatalog
from infra.settings import Settings
from tests.support.fake_stripe_meter import FakeStripeMeter
from tests.support.stripe_objects import PLANS_JSON, event, subscription
from workers import metering, plans_service

CATALOG = PlanCatalog.parse(PLANS_JSON)
API_KEY = "sk_test_" + uuid.uuid4().hex
EVENT = "ai_tokens"


@pytest.fixture
async def fake_meter():
    fake = FakeStripeMeter(api_key=API_KEY)
    await fake.start()
    yield fake
    await fake.close()


def meter_settings(settings: Settings, url: str, key: str = API_KEY) -> Settings:
    return settings.model_copy(
        update={"stripe_secret_key": SecretStr(key), "stripe_api_base": url, "stripe_meter_event_name": EVENT}
    )


@pytest.fixture
async def client(fake_meter, settings: Settings):
    c = metering.meter_client(meter_settings(settings, fake_meter.url))
    assert c is not None
    yield c
    await c.close()


@pytest.fixture(autouse=True)
async def _nothing_pending_from_other_tests(ledger):
    """Each test reports only its own rows: mark rows left by earlier tests as reported."""
    await ledger.execute("UPDATE ai_usage SET meter_reported_at = now() WHERE meter_reported_at IS NULL")


async def subscribed_user(pool, status: str = "active") -> tuple[str, str]:
    h = uuid.uuid4().hex[:8]
    user, cus = f"m-{h}", f"cus_{h}"
    sub = subscription(f"sub_{h}", cus, "price_pro", status=status, user_id=user)
    out = await plans_service.apply_event(pool, event("customer.subscription.created", sub, int(time.time())), CATALOG)
    assert out.status == "applied"
    return user, cus


async def usage(pool, asker: str, tokens: tuple[int, int] = (7, 5), status: str = "ok", at: datetime | None = None):
    call_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO ai_usage (call_id, command_id, purpose, asker, model, prompt_tokens, completion_tokens,"
        " latency_ms, status, created_at) VALUES ($1, 'c', 'reply', $2, 'm', $3, $4, 1, $5, $6)",
        call_id,
        asker,
        tokens[0],
        tokens[1],
        status,
        at or datetime.now(UTC),
    )
    return call_id


async def reported(pool, call_id) -> bool:
    return await pool.fetchval("SELECT meter_reported_at IS NOT NULL FROM ai_usage WHERE call_id = $1", call_id)


async def test_each_usage_row_is_one_meter_event_even_when_the_report_runs_twice(ledger, fake_meter, client):
    user, cus = await subscribed_user(ledger)
    calls = [await usage(ledger, f"user:{user}", (10 + i, i)) for i in range(5)]
    first = await metering.report_pending(ledger, client, batch_size=2)
    second = await metering.report_pending(ledger, client, batch_size=2)
    assert (first.sent, first.failed, second.sent) == (5, 0, 0)
    events = fake_meter.by_identifier()
    assert len(fake_meter.events) == 5 and set(events) == {str(c) for c in calls}
    assert all(e.customer_id == cus and e.event_name == EVENT for e in fake_meter.events)
    assert events[str(calls[3])].value == 13 + 3
    assert fake_meter.requests == 5  # the second run sent nothing
    assert all([await reported(ledger, c) for c in calls])


async def test_a_failed_send_is_retried_with_the_same_identifier(ledger, fake_meter, client):
    user, _ = await subscribed_user(ledger)
    call = await usage(ledger, f"user:{user}")
    fake_meter.fail_next(1)
    result = await metering.report_pending(ledger, client, batch_size=10)
    assert (result.sent, result.failed) == (0, 1) and not await reported(ledger, call)
    result = await metering.report_pending(ledger, client, batch_size=10)
    assert (result.sent, result.failed) == (1, 0) and await reported(ledger, call)
    assert [e.identifier for e in fake_meter.events] == [str(call)]


async def test_an_answer_lost_after_stripe_recorded_the_event_bills_once(ledger, fake_meter, client):
    """As if the worker died between Stripe's answer and the commit: the row is sent again, same identifier."""
    user, _ = await subscribed_user(ledger)
    call = await usage(ledger, f"user:{user}")
    fake_meter.lose_next(1)
    assert (await metering.report_pending(ledger, client, batch_size=10)).failed == 1
    assert not await reported(ledger, call)
    assert (await metering.report_pending(ledger, client, batch_size=10)).sent == 1
    assert len(fake_meter.events) == 1 and fake_meter.requests == 2 and await reported(ledger, call)


async def test_only_subscribed_users_ok_calls_since_subscribing_are_reported(ledger, fake_meter, client):
    user, _ = await subscribed_user(ledger)
    old = await usage(ledger, f"user:{user}", at=datetime.now(UTC) - timedelta(days=2))  # before the plan
    failed = await usage(ledger, f"user:{user}", status="error")
    free = await usage(ledger, f"user:free-{uuid.uuid4().hex[:6]}")
    tenant = await usage(ledger, f"tenant:t-{uuid.uuid4().hex[:6]}")
    lapsed_user, _ = await subscribed_user(ledger, status="unpaid")
    lapsed = await usage(ledger, f"user:{lapsed_user}")
    good = await usage(ledger, f"user:{user}")
    result = await metering.report_pending(ledger, client, batch_size=10)
    assert result.sent == 1 and [e.identifier for e in fake_meter.events] == [str(good)]
    for call in (old, failed, free, tenant, lapsed):
        assert not await reported(ledger, call)


async def test_calls_inside_a_plan_are_reported_even_after_it_lapsed_and_none_from_the_gap(ledger, fake_meter, client):
    user, cus = await subscribed_user(ledger)
    h = uuid.uuid4().hex[:8]
    during = await usage(ledger, f"user:{user}")
    t = int(time.time())
    old_sub = await ledger.fetchval("SELECT stripe_subscription_id FROM user_plans WHERE user_id = $1", user)
    canceled = subscription(old_sub, cus, "price_pro", status="canceled", user_id=user)
    assert (
        await plans_service.apply_event(ledger, event("customer.subscription.deleted", canceled, t + 1), CATALOG)
    ).status == "applied"
    gap = await usage(ledger, f"user:{user}")
    again = subscription(f"sub_{h}", cus, "price_starter", user_id=user)
    await plans_service.apply_event(ledger, event("customer.subscription.created", again, t + 2), CATALOG)
    after = await usage(ledger, f"user:{user}")
    result = await metering.report_pending(ledger, client, batch_size=10)
    assert result.sent == 2 and set(fake_meter.by_identifier()) == {str(during), str(after)}
    assert not await reported(ledger, gap)


async def test_a_second_reporter_waits_its_turn(ledger, fake_meter, client):
    async with ledger.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", metering._REPORT_LOCK)
        try:
            assert (await metering.report_pending(ledger, client, batch_size=10)).skipped
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", metering._REPORT_LOCK)


async def test_a_wrong_key_reports_nothing_and_marks_nothing(ledger, fake_meter, settings):
    user, _ = await subscribed_user(ledger)
    call = await usage(ledger, f"user:{user}")
    bad = metering.meter_client(meter_settings(settings, fake_meter.url, "sk_test_wrong"))
    result = await metering.report_pending(ledger, bad, batch_size=10)
    await bad.close()
    assert (result.sent, result.failed) == (0, 1) and not fake_meter.events and not await reported(ledger, call)
