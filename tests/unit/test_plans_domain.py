"""Plans configuration, event ordering and the UTC quota day (domain.plans)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from domain.plans import PlanCatalog, PlanConfigError, is_newer, over_quota, quota_day, resets_at


def test_defaults_have_the_four_seed_plans_and_free_is_always_there():
    catalog = PlanCatalog.parse("")
    assert set(catalog.plans) == {"free", "starter", "pro", "business"}
    assert catalog.free.monthly_credits == 0 and catalog.plans["business"].daily_messages is None


def test_overrides_merge_over_the_defaults_and_map_prices():
    catalog = PlanCatalog.parse(
        '{"Pro": {"price_id": "price_1", "daily_messages": null}, "team": {"monthly_credits": 7}}'
    )
    pro = catalog.by_price("price_1")
    assert pro is not None and pro.name == "pro" and pro.daily_messages is None and pro.monthly_credits == 500
    assert (
        catalog.plans["team"].monthly_credits == 7
        and catalog.by_price("nope") is None
        and catalog.by_price(None) is None
    )


@pytest.mark.parametrize(
    "raw",
    [
        "[1]",
        '{"pro": 3}',
        '{"pro": {"daily_messages": -1}}',
        '{"pro": {"daily_messages": true}}',
        '{"pro": {"price_id": 5}}',
        '{"pro": {"colour": "red"}}',
        '{"pro": {"price_id": "p"}, "starter": {"price_id": "p"}}',
    ],
)
def test_bad_configuration_is_refused(raw):
    with pytest.raises(PlanConfigError):
        PlanCatalog.parse(raw)


def test_effective_plan_falls_back_to_free_unless_active():
    catalog = PlanCatalog.parse("")
    assert catalog.effective("pro", "active").name == "pro"
    assert catalog.effective("pro", "past_due").name == "pro"
    assert catalog.effective("pro", "unpaid").name == "free"
    assert catalog.effective("pro", "canceled").name == "free"
    assert catalog.effective("gone", "active").name == "free"


def test_event_ordering():
    assert is_newer(10, 1, None, 0)
    assert is_newer(11, 1, 10, 4)
    assert not is_newer(9, 4, 10, 1)
    assert is_newer(10, 3, 10, 1) and not is_newer(10, 1, 10, 3)


def test_quota_day_is_the_utc_day():
    late = datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC).timestamp()
    assert quota_day(late) == date(2026, 11, 23)
    assert quota_day(late + 1) == date(2026, 11, 24)
    assert resets_at(date(2026, 12, 31)) == datetime(2027, 1, 1, tzinfo=UTC)


def test_over_quota():
    assert not over_quota(1, 2) and over_quota(2, 2) and not over_quota(10**9, None)
