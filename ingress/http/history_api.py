"""``GET /api/credits/history/{userId}``: a user's ledger entries, newest first, page by page.

The cursor is opaque to clients (base64url of the last entry's position), so the
keyset behind it can change without breaking them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re

from aiohttp import web

from infra import history, ledger
from ingress.http.api_docs import ADMIN_OR_JWT, Query, documented, whole
from ingress.http.errors import BadRequest, Forbidden, NotFound, Unauthorized
from ingress.http.http_api import bearer_caller
from ingress.state import APP_STATE
from schemas.history import Counterparty, HistoryEntry, HistoryPage

history_routes = web.RouteTableDef()

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_CURSOR = re.compile(r"^v1:(\d{1,19}):(\d{1,19})$")
LIMIT = Query("limit", f"How many per page, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})", whole(1, MAX_LIMIT))
CURSOR = Query("cursor", "The nextCursor of the page before; none: the first page")
REFUSALS = (BadRequest, Unauthorized, Forbidden)


def encode_cursor(position: history.Position) -> str:
    raw = f"v1:{position[0]}:{position[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> history.Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("cursor: not a cursor this endpoint returned") from None
    if (match := _CURSOR.fullmatch(raw)) is None:
        raise BadRequest("cursor: not a cursor this endpoint returned")
    txn_id, posting_id = int(match[1]), int(match[2])
    if txn_id >= 2**63 or posting_id >= 2**63:
        raise BadRequest("cursor: not a cursor this endpoint returned")
    return txn_id, posting_id


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise BadRequest(f"limit: a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def _authorize(request: web.Request, user_id: str) -> None:
    """Returns if the caller is an admin or the user; otherwise raises the 401 or 403 to answer."""
    s = request.app[APP_STATE].settings
    admin_token = request.headers.get("x-admin-token")
    if admin_token is not None:
        if hmac.compare_digest(admin_token.encode(), s.admin_token.get_secret_value().encode()):
            return
        raise Unauthorized("bad admin token")
    caller = bearer_caller(request, "send a Bearer JWT or x-admin-token")
    if not (caller.is_admin or caller.user_id == user_id):
        raise Forbidden("only that user or an admin may read this history")


def _counterparty(accounts: tuple[str, ...]) -> Counterparty | None:
    if not accounts:
        return None
    account = accounts[0]
    kind, _, ident = account.partition(":")
    return Counterparty(account=account, type=kind, id=ident)


def _entry(item: history.Entry) -> HistoryEntry:
    return HistoryEntry(
        transactionId=item.position[0],
        kind=item.kind,
        amount=item.amount,
        direction="in" if item.amount > 0 else "out",
        counterparty=_counterparty(item.counterparties),
        reference=item.reference,
        memo=item.memo,
        createdAt=item.created_at.isoformat(),
    )


@history_routes.get("/api/credits/history/{userId}")
@documented({200: HistoryPage}, *REFUSALS, NotFound, auth=ADMIN_OR_JWT, query=(LIMIT, CURSOR))
async def credit_history(request: web.Request) -> web.Response:
    """A user's ledger entries, newest first, page by page (that user or an admin)."""
    user_id = request.match_info["userId"]
    if not 1 <= len(user_id) <= 128:
        raise BadRequest("userId: 1-128 characters")
    _authorize(request, user_id)
    limit = parse_limit(request.query.get("limit"))
    cursor = request.query.get("cursor")
    before = decode_cursor(cursor) if cursor else None
    account = ledger.user_account(user_id)
    async with request.app[APP_STATE].reads.acquire() as conn:  # a replica when DATABASE_READ_URL is set
        if not await history.account_exists(conn, account):
            raise NotFound(f"no account for user {user_id!r}", code="unknown_user")
        page = await history.entries(conn, account, before, limit + 1)
    more = len(page) > limit
    page = page[:limit]
    body = HistoryPage(
        userId=user_id,
        entries=[_entry(item) for item in page],
        nextCursor=encode_cursor(page[-1].position) if more else None,
    )
    return web.json_response(body.model_dump(mode="json"))
