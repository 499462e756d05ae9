"""Daily plan quotas, checked inside the worker transactions that would use them.

Messages are counted in ``daily_usage`` (one row per user and UTC day) in the same transaction
that applies the message, under the sender's account lock, so concurrent sends cannot both
take the last unit. AI tokens are summed from ``ai_usage`` (what the model actually used);
the check runs before a call, so the call that crosses the limit completes and the next one is
refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg

from domain.plans import PlanCatalog, over_quota, quota_day, resets_at
from infra import plan_usage
from schemas.socket_events import QuotaExceeded


@dataclass(frozen=True, slots=True)
class QuotaBlock:
    kind: str  # "messages" | "ai_tokens"
    plan: str
    limit: int
    used: int
    day: date

    def event(self, message_id: str | None = None, client_message_id: str | None = None,
              room_id: str | None = None) -> dict:  # fmt: skip
        what = "messages" if self.kind == "messages" else "AI tokens"
        resets = resets_at(self.day).isoformat().replace("+00:00", "Z")
        return QuotaExceeded(
            kind=self.kind, limit=self.limit, used=self.used, plan=self.plan, resetsAt=resets,
            message=f"Daily quota reached: the {self.plan} plan allows {self.limit} {what} a day;"
                    f" it resets at {resets}.",
            messageId=message_id, clientMessageId=client_message_id, roomId=room_id,
        ).model_dump(mode="json")  # fmt: skip


async def message_block(conn: asyncpg.Connection, catalog: PlanCatalog, user_id: str, at: float) -> QuotaBlock | None:
    """A block if one more message today would exceed the plan; call with the account locked."""
    plan = await plan_usage.plan_of(conn, catalog, user_id)
    if plan.daily_messages is None:
        return None
    day = quota_day(at)
    used = await plan_usage.messages_used(conn, user_id, day)
    if over_quota(used, plan.daily_messages):
        return QuotaBlock("messages", plan.name, plan.daily_messages, used, day)
    return None


async def count_message(conn: asyncpg.Connection, user_id: str, at: float) -> None:
    await conn.execute(
        "INSERT INTO daily_usage (user_id, day, messages) VALUES ($1, $2, 1)"
        " ON CONFLICT (user_id, day) DO UPDATE SET messages = daily_usage.messages + 1",
        user_id,
        quota_day(at),
    )


async def ai_token_block(
    conn: asyncpg.Connection | asyncpg.Pool, catalog: PlanCatalog, user_id: str, at: float
) -> QuotaBlock | None:
    """A block if the user's AI tokens today already reached the plan's limit."""
    plan = await plan_usage.plan_of(conn, catalog, user_id)
    if plan.daily_ai_tokens is None:
        return None
    day = quota_day(at)
    used = await plan_usage.ai_tokens_used(conn, user_id, day)
    if over_quota(used, plan.daily_ai_tokens):
        return QuotaBlock("ai_tokens", plan.name, plan.daily_ai_tokens, used, day)
    return None
