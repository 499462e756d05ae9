"""``GET /api/tenants/{tenantId}/conversations``: the operator console's live inbox, page by page.

For the tenant's operators (JWT ``role: operator``, ``tenant``) and admins. Reads may lag (a
replica when ``DATABASE_READ_URL`` is set): the console keeps the list current from the live
``conversationUpdated`` events. The cursor is opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime

from aiohttp import web

from infra import analytics, conversations
from ingress.auth import is_admin_request
from ingress.http.api_docs import ADMIN_OR_JWT, documented
from ingress.http.errors import BadRequest, Forbidden, NotFound
from ingress.http.history_api import CURSOR, LIMIT, REFUSALS, parse_limit
from ingress.http.http_api import bearer_caller
from ingress.state import APP_STATE

conversation_routes = web.RouteTableDef()
PAGE = {200: "tenantId, conversations (with their last message and unread counts) and nextCursor"}

_CURSOR = re.compile(r"^c1:(\d{1,17}):([0-9a-f-]{36})$")
_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # as migration 0002 allows


def encode_cursor(position: conversations.Position) -> str:
    at, conversation_id = position
    micros = int(at.timestamp()) * 1_000_000 + at.microsecond
    return base64.urlsafe_b64encode(f"c1:{micros}:{conversation_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> conversations.Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        match = _CURSOR.fullmatch(raw)
        if match is None:
            raise ValueError(raw)
        micros = int(match[1])
        at = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)
        return at, uuid.UUID(match[2])
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError):
        raise BadRequest("cursor: not a cursor this endpoint returned") from None


def _authorize(request: web.Request, tenant_id: str) -> None:
    """Returns for an admin or an operator of ``tenant_id``; otherwise raises the 401 or 403 to answer."""
    s = request.app[APP_STATE].settings
    if is_admin_request(request, s.admin_token.get_secret_value(), s.jwt_secret.get_secret_value()):
        return
    caller = bearer_caller(request, "send a Bearer JWT")
    if caller.operator_of != tenant_id:
        raise Forbidden("only the tenant's operators and admins may read its conversations")


@conversation_routes.get("/api/tenants/{tenantId}/conversations")
@documented(PAGE, *REFUSALS, NotFound, auth=ADMIN_OR_JWT, query=(LIMIT, CURSOR))
async def list_conversations(request: web.Request) -> web.Response:
    """A tenant's conversations, most recent first, page by page (its operators and admins)."""
    tenant_id = request.match_info["tenantId"]
    if not _TENANT.fullmatch(tenant_id):
        raise BadRequest("tenantId: 1-64 letters, digits, '_', '.' or '-'")
    _authorize(request, tenant_id)
    limit = parse_limit(request.query.get("limit"))
    cursor = request.query.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    async with request.app[APP_STATE].reads.acquire() as conn:
        if not await analytics.tenant_exists(conn, tenant_id):
            raise NotFound(f"no tenant {tenant_id!r}", code="unknown_tenant")
        page = await conversations.page(conn, tenant_id, after, limit)
    next_cursor = encode_cursor(page.next_position) if page.next_position is not None else None
    return web.json_response({"tenantId": tenant_id, "conversations": page.conversations, "nextCursor": next_cursor})
