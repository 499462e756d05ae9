"""Tenant analytics: ``/api/analytics/*``, for admins (any tenant) and a tenant's operators (theirs)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aiohttp import web

from infra import analytics
from ingress.auth import Unauthorized, bearer_token, is_admin_request
from ingress.http.http_api import bearer_identity, json_error
from ingress.state import APP_STATE

analytics_routes = web.RouteTableDef()

DEFAULT_WINDOW = timedelta(days=7)
_EPOCH_MS = re.compile(r"^-?\d{1,15}$")
_UNENCODED_PLUS = re.compile(
    r"(:\d\d(?:\.\d+)?) (\d\d(?::?\d\d)?)$"
)  # "...T10:00:00+01:00" with its "+" not URL-encoded


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _tenant_for(request: web.Request) -> str:
    """The tenant this caller asks about and may read, or ``_Refused`` with 400/403."""
    s = request.app[APP_STATE].settings
    asked = request.query.get("tenant") or None
    if is_admin_request(request, s.admin_token.get_secret_value(), s.jwt_secret.get_secret_value()):
        if asked is None:
            raise _Refused(json_error(400, "bad_request", "tenant is required"))
        return asked
    operator_of = None
    token = bearer_token(request)
    if token is not None:
        try:
            operator_of = bearer_identity(request).operator_of
        except Unauthorized:
            operator_of = None
    if operator_of is None:
        raise _Refused(json_error(403, "forbidden", "admins and a tenant's operators only"))
    if asked is not None and asked != operator_of:
        raise _Refused(json_error(403, "forbidden", "operators may only read their own tenant"))
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
        raise _Refused(json_error(400, "bad_request", str(exc))) from None
    if not await analytics.tenant_exists(request.app[APP_STATE].reads, tenant_id):
        raise _Refused(json_error(404, "unknown_tenant", f"no tenant {tenant_id[:64]!r}"))
    return tenant_id, since


@analytics_routes.get("/api/analytics/conversations")
async def conversation_analytics(request: web.Request) -> web.Response:
    try:
        tenant_id, since = await _prepare(request, datetime.now(UTC) - DEFAULT_WINDOW)
    except _Refused as refused:
        return refused.response
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
async def intent_analytics(request: web.Request) -> web.Response:
    try:
        tenant_id, since = await _prepare(request, None)
    except _Refused as refused:
        return refused.response
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
