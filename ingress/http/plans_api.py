"""HTTP routes for plans: the plan list, and a user's plan with today's quota usage."""

from __future__ import annotations

import time

from aiohttp import web

from domain.plans import Plan, quota_day, resets_at
from infra import plan_usage
from ingress.http.api_docs import ADMIN_OR_JWT, documented
from ingress.http.errors import BadRequest, Forbidden
from ingress.http.http_api import _caller_may_read, _user_id
from ingress.state import APP_STATE

plans_routes = web.RouteTableDef()


def _plan_json(plan: Plan) -> dict:
    return {
        "name": plan.name,
        "priceId": plan.price_id,
        "monthlyCredits": plan.monthly_credits,
        "dailyMessages": plan.daily_messages,
        "dailyAiTokens": plan.daily_ai_tokens,
    }


@plans_routes.get("/api/plans")
@documented({200: "Each plan: name, priceId, monthlyCredits, dailyMessages, dailyAiTokens"})
async def list_plans(request: web.Request) -> web.Response:
    """Every plan and its allowance and quotas (``null`` = unlimited); quotas count per UTC day."""
    catalog = request.app[APP_STATE].settings.plan_catalog
    return web.json_response({"plans": [_plan_json(p) for p in catalog.plans.values()]})


@plans_routes.get("/api/plans/usage/{userId}")
@documented({200: "The plan, its status and quotas"}, BadRequest, Forbidden, auth=ADMIN_OR_JWT)
async def plan_usage_of(request: web.Request) -> web.Response:
    """That user (Bearer JWT) or an admin: the plan, its status and today's quota usage."""
    user_id = _user_id(request)
    if not _caller_may_read(request, user_id):
        raise Forbidden("only that user or an admin may read this")
    state = request.app[APP_STATE]
    catalog = state.settings.plan_catalog
    day = quota_day(time.time())
    async with state.reads.acquire() as conn:  # display only (workers enforce quotas on the primary)
        row = await plan_usage.plan_row(conn, user_id)
        plan = catalog.effective(row["plan"], row["status"]) if row else catalog.free
        messages = await plan_usage.messages_used(conn, user_id, day)
        tokens = await plan_usage.ai_tokens_used(conn, user_id, day)
    resets = resets_at(day).isoformat().replace("+00:00", "Z")
    period_end = row["current_period_end"] if row else None
    return web.json_response(
        {
            "userId": user_id,
            "plan": plan.name,
            "subscribedPlan": row["plan"] if row else None,
            "status": row["status"] if row else None,
            "currentPeriodEnd": period_end.isoformat().replace("+00:00", "Z") if period_end else None,
            "monthlyCredits": plan.monthly_credits,
            "quotas": {
                "messages": {"limit": plan.daily_messages, "used": messages, "resetsAt": resets},
                "aiTokens": {"limit": plan.daily_ai_tokens, "used": tokens, "resetsAt": resets},
            },
        }
    )
