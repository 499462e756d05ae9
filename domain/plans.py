"""Plans, their daily quotas, and the rules that order Stripe's subscription events.

Quotas count per UTC day: a day starts at 00:00 UTC and every quota resets then.
``None`` as a quota means unlimited.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

FREE = "free"

# Subscription statuses under which the subscribed plan applies. ``past_due`` keeps it while
# Stripe retries the payment; ``unpaid``, ``canceled``, ``incomplete`` and
# ``incomplete_expired`` fall back to Free.
ACTIVE_STATUSES = frozenset({"active", "trialing", "past_due"})

# Within one second (Stripe's ``created`` resolution), a later step of a subscription's life wins.
EVENT_RANK = {
    "customer.subscription.created": 1,
    "invoice.payment_failed": 2,
    "invoice.paid": 2,
    "customer.subscription.updated": 3,
    "customer.subscription.deleted": 4,
}

DEFAULT_PLANS: dict[str, dict[str, Any]] = {
    "free": {"price_id": None, "monthly_credits": 0, "daily_messages": 5_000, "daily_ai_tokens": 50_000},
    "starter": {"price_id": None, "monthly_credits": 100, "daily_messages": 20_000, "daily_ai_tokens": 500_000},
    "pro": {"price_id": None, "monthly_credits": 500, "daily_messages": 100_000, "daily_ai_tokens": 2_000_000},
    "business": {"price_id": None, "monthly_credits": 2_000, "daily_messages": None, "daily_ai_tokens": None},
}


class PlanConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    price_id: str | None
    monthly_credits: int
    daily_messages: int | None
    daily_ai_tokens: int | None


def _quota(name: str, key: str, value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PlanConfigError(f"plan {name!r}: {key} must be a non-negative integer or null")
    return value


@dataclass(frozen=True, slots=True)
class PlanCatalog:
    plans: dict[str, Plan]

    @classmethod
    def parse(cls, raw: str | dict[str, Any] | None) -> PlanCatalog:
        """Plans from JSON ``{name: {price_id, monthly_credits, daily_messages, daily_ai_tokens}}``.

        Missing plans and fields take the defaults; there is always a ``free`` plan.
        """
        data = json.loads(raw) if isinstance(raw, str) and raw.strip() else (raw or {})
        if not isinstance(data, dict):
            raise PlanConfigError("PLANS must be a JSON object of plan name -> settings")
        merged = {name: dict(fields) for name, fields in DEFAULT_PLANS.items()}
        for name, fields in data.items():
            if not isinstance(fields, dict):
                raise PlanConfigError(f"plan {name!r} must be an object")
            unknown = set(fields) - set(DEFAULT_PLANS[FREE])
            if unknown:
                raise PlanConfigError(f"plan {name!r}: unknown field(s) {sorted(unknown)}")
            merged.setdefault(name.lower(), dict(DEFAULT_PLANS[FREE], price_id=None)).update(fields)
        plans: dict[str, Plan] = {}
        prices: dict[str, str] = {}
        for name, f in merged.items():
            price = f.get("price_id") or None
            if price is not None and not isinstance(price, str):
                raise PlanConfigError(f"plan {name!r}: price_id must be a string")
            if price in prices:
                raise PlanConfigError(f"price {price!r} is used by both {prices[price]!r} and {name!r}")
            if price:
                prices[price] = name
            credits = _quota(name, "monthly_credits", f.get("monthly_credits", 0)) or 0
            plans[name] = Plan(
                name,
                price,
                credits,
                _quota(name, "daily_messages", f.get("daily_messages")),
                _quota(name, "daily_ai_tokens", f.get("daily_ai_tokens")),
            )
        return cls(plans)

    @property
    def free(self) -> Plan:
        return self.plans[FREE]

    def get(self, name: str | None) -> Plan | None:
        return self.plans.get(name) if name else None

    def by_price(self, price_id: str | None) -> Plan | None:
        if not price_id:
            return None
        return next((p for p in self.plans.values() if p.price_id == price_id), None)

    def effective(self, plan_name: str | None, status: str | None) -> Plan:
        """The plan whose quotas apply to a user with this stored plan and status."""
        plan = self.get(plan_name)
        if plan is None or status not in ACTIVE_STATUSES:
            return self.free
        return plan


def is_newer(event_at: float, event_rank: int, stored_at: float | None, stored_rank: int) -> bool:
    """Whether an event may overwrite a state written by another event (ties go to the later step)."""
    if stored_at is None:
        return True
    return (event_at, event_rank) >= (stored_at, stored_rank)


# --- the quota day -------------------------------------------------------------


def quota_day(epoch_s: float) -> date:
    return datetime.fromtimestamp(epoch_s, UTC).date()


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def resets_at(day: date) -> datetime:
    """When the quotas of ``day`` reset: the next 00:00 UTC."""
    return day_start(day) + timedelta(days=1)


def over_quota(used: int, limit: int | None, adding: int = 1) -> bool:
    """Whether using ``adding`` more on top of ``used`` would exceed ``limit`` (None: unlimited)."""
    return limit is not None and used + adding > limit
