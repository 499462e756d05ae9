"""Daily plan quotas, checked inside the worker transactions that would use them.

Messages are counted in ``daily_usage`` (one row per user and UTC day) in the same transaction
that applies the message, under the sender's account lock, so concurrent sends cannot both
take the last unit. AI tokens are summed from ``ai_usage`` (what the model actually used);
the check runs before a call, so the call that crosses the limit completes and the next one is
refused.
"""

from __future__ import annotations

from domain.plans import PlanCatalog, over_quota, quota_day, resets_at
from domain.spending import Quota
from infra import plan_usage
from infra.db import Conn, ConnOrPool
from schemas.socket_events import QuotaExceeded


def quota_exceeded(
    quota: Quota, message_id: str | None = None, client_message_id: str | None = None, room_id: str | None = None
) -> dict:
    """The ``quotaExceeded`` event for a refused spend."""
    what = "messages" if quota.kind == "messages" else "AI tokens"
    resets = resets_at(quota.day).isoformat().replace("+00:00", "Z")
    return QuotaExceeded(
        kind=quota.kind,
        limit=quota.limit,
        used=quota.used,
        plan=quota.plan,
        resetsAt=resets,
        message=f"Daily quota reached: the {quota.plan} plan allows {quota.limit} {what} a day; it resets at {resets}.",
        messageId=message_id,
        clientMessageId=client_message_id,
        roomId=room_id,
    ).model_dump(mode="json")


async def message_quota(conn: Conn, catalog: PlanCatalog, user_id: str, at: float) -> Quota | None:
    """Today's message quota of the user's plan (None: unlimited); call with the account locked."""
    plan = await plan_usage.plan_of(conn, catalog, user_id)
    if plan.daily_messages is None:
        return None
    day = quota_day(at)
    return Quota("messages", plan.name, plan.daily_messages, await plan_usage.messages_used(conn, user_id, day), day)


async def ai_token_block(conn: ConnOrPool, catalog: PlanCatalog, user_id: str, at: float) -> Quota | None:
    """Today's AI-token quota if the user's tokens already reached it (None: the plan allows more)."""
    plan = await plan_usage.plan_of(conn, catalog, user_id)
    if plan.daily_ai_tokens is None:
        return None
    day = quota_day(at)
    used = await plan_usage.ai_tokens_used(conn, user_id, day)
    quota = Quota("ai_tokens", plan.name, plan.daily_ai_tokens, used, day)
    return quota if over_quota(quota.used, quota.limit) else None
