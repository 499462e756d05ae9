"""``GET /api/rooms/{roomId}/messages?afterSeq=&beforeSeq=&limit=``: a room's history, page by page,
for whoever may join the room (the same rule as ``joinRoom``).

Pages are keyed by the room's message ``seq``: ``afterSeq`` pages forwards (catching up after a
reconnect, from roomJoined's ``lastSeq`` or the last ``seq`` a client has), otherwise pages go
backwards from ``beforeSeq`` (or from the latest message). Messages come oldest first either way.
"""

from __future__ import annotations

from aiohttp import web

from domain.errors import InvalidRoom, RoomForbidden
from domain.rooms import resolve_join
from infra import messages
from ingress import auth
from ingress.http.api_docs import JWT, Query, documented, whole
from ingress.http.errors import BadRequest, Forbidden, Unauthorized
from ingress.http.http_api import bearer_identity
from ingress.state import APP_STATE
from schemas.socket_events import MAX_SEQ

room_message_routes = web.RouteTableDef()

DEFAULT_LIMIT = 50
PAGE = {200: "roomId, messages (as newMessage events), lastSeq and hasMore"}
QUERY = (
    Query("afterSeq", "Page forwards from after this seq", whole(0, MAX_SEQ)),
    Query("beforeSeq", "Page backwards from before this seq", whole(1, MAX_SEQ)),
    Query("limit", f"How many, at most HISTORY_PAGE_MAX (default {DEFAULT_LIMIT})", whole(1)),
)


def _whole(name: str, value: str | None, low: int, high: int) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadRequest(f"{name}: a whole number from {low} to {high}")
    return int(value)


@room_message_routes.get("/api/rooms/{roomId}/messages")
@documented(PAGE, BadRequest, Unauthorized, Forbidden, auth=JWT, query=QUERY)
async def room_messages(request: web.Request) -> web.Response:
    """A room's messages by seq, oldest first, for whoever may join it.

    afterSeq pages forwards (catching up); otherwise pages go back from beforeSeq or the latest.
    """
    state = request.app[APP_STATE]
    try:
        who = bearer_identity(request)
    except auth.Unauthorized:
        raise Unauthorized("send a valid Bearer JWT") from None
    room_id = request.match_info["roomId"]
    try:
        resolve_join(room_id, None, who.user_id, operator_of=who.operator_of, is_admin=who.is_admin)
    except InvalidRoom as exc:
        raise BadRequest(str(exc), code="invalid_room") from None
    except RoomForbidden as exc:
        raise Forbidden(str(exc)) from None
    after = _whole("afterSeq", request.query.get("afterSeq"), 0, MAX_SEQ)
    before = _whole("beforeSeq", request.query.get("beforeSeq"), 1, MAX_SEQ)
    limit = _whole("limit", request.query.get("limit"), 1, state.settings.history_page_max) or DEFAULT_LIMIT
    # The primary, not a replica: a client catching up after a reconnect must not miss what a lagging
    # replica has not seen yet (it stops paging at hasMore: false).
    page = await messages.page(state.pool, room_id, after_seq=after, before_seq=before, limit=limit)
    return web.json_response(
        {"roomId": room_id, "messages": page.payloads, "lastSeq": page.last_seq, "hasMore": page.has_more}
    )
