"""Tenant analytics: ``/api/analytics/*``, for admins (any tenant) and a tenant's operators (theirs)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aiohttp import web

from infra import analytics
from ingress import auth
from ingress.auth import bearer_token, is_admin_request
from ingress.http.api_docs import ADMIN_OR_JWT, Query, documented
from ingress.http.errors import BadRequest, Forbidden, NotFound
from ingress.http.http_api import bearer_identity
from ingress.state import APP_STATE

analytics_routes = web.RouteTableDef()
REFUSALS = (BadRequest, Forbidden, NotFound)
QUERY = (
    Query("tenant", "The tenant: required of admins; an operator's own by default"),
    Query("since", "ISO 8601 (a naive time is UTC) or epoch milliseconds"),
)

DEFAULT_WINDOW = timedelta(days=7)
_EPOCH_MS = re.compile(r"^-?\d{1,15}$")
_UNENCODED_PLUS = re.compile(
    r"(:\d\d(?:\.\d+)?) (\d\d(?::?\d\d)?)$"
)  # "...T10:00:00+01:00" with its "+" not URL-encoded


def _tenant_for(request: web.Request) -> str:
    """The tenant this caller asks about and may read; BadRequest or Forbidden otherwise."""
    s = request.app[APP_STATE].settings
    asked = request.query.get("tenant") or None
    if is_admin_request(request, s.admin_token.get_secret_value(), s.jwt_secret.get_secret_value()):
        if asked is None:
            raise BadRequest("tenant is required")
        return asked
    operator_of = None
    token = bearer_token(request)
    if token is not None:
        try:
            operator_of = bearer_identity(request).operator_of
        except auth.Unauthorized:
            operator_of = None
    if operator_of is None:
        raise Forbidden("admins and a tenant's operators only")
    if asked is not None and asked != operator_of:
        raise Forbidden("operators may only read their own tenant")
    return operator_of


def parse_since(value: str | None, default: datetime | None) -> datetime | None:
    """ISO 8601 (a naive time is UTC) or epoch milliseconds; ``ValueError`` when neither."""
    if value is None or value == "":
        return default
    try:
        if _EPOCH_MS.match(value):
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        parsed = datetime.fromisoformat(_UNENCODED_PLUS.sub(r"\1+\2", value))
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"since must be ISO 8601 or epoch milliseconds, not {value[:64]!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _prepare(request: web.Request, default_since: datetime | None) -> tuple[str, datetime | None]:
    tenant_id = _tenant_for(request)
    try:
        since = parse_since(request.query.get("since"), default_since)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if not await analytics.tenant_exists(request.app[APP_STATE].reads, tenant_id):
        raise NotFound(f"no tenant {tenant_id[:64]!r}", code="unknown_tenant")
    return tenant_id, since


@analytics_routes.get("/api/analytics/conversations")
@documented({200: "Counts per channel, and the agent's replies"}, *REFUSALS, auth=ADMIN_OR_JWT, query=QUERY)
async def conversation_analytics(request: web.Request) -> web.Response:
    """A tenant's conversations and messages since a time (default: the last 7 days).

    For admins (tenant required) and the tenant's operators. Reads may lag.
    """
    tenant_id, since = await _prepare(request, datetime.now(UTC) - DEFAULT_WINDOW)
    assert since is not None
    stats = await analytics.conversation_stats(request.app[APP_STATE].reads, tenant_id, since)  # may lag
    return web.json_response(
        {
            "tenant": tenant_id,
            "since": _iso(since),
            "conversations": stats.conversations,
            "newConversations": stats.new_conversations,
            "messages": stats.messages,
            "perChannel": stats.per_channel,
            "agent": {"replies": stats.replies, "avgResponseMs": stats.avg_response_ms},
        }
    )


@analytics_routes.get("/api/analytics/intents")
@documented({200: "Classified messages by intent, and leads"}, *REFUSALS, auth=ADMIN_OR_JWT, query=QUERY)
async def intent_analytics(request: web.Request) -> web.Response:
    """A tenant's message intents and leads, since a time or ever.

    For admins (tenant required) and the tenant's operators. Reads may lag.
    """
    tenant_id, since = await _prepare(request, None)
    stats = await analytics.intent_stats(request.app[APP_STATE].reads, tenant_id, since)
    return web.json_response(
        {
            "tenant": tenant_id,
            "since": _iso(since) if since else None,
            "classified": stats.classified,
            "intents": stats.intents,
            "leads": stats.leads,
        }
    )
