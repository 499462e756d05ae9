"""HTTP routes of every ingress node: health, credit stats and admin grants, chat stats."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from domain.errors import DomainError
from infra import db, grants, json_limits, ledger
from infra.grants import GrantResult
from infra.json_limits import JsonLimitError, JsonLimits
from ingress import auth
from ingress.auth import Identity, bearer_token, decode_token, is_admin_request
from ingress.http.api_docs import ADMIN_OR_JWT, documented
from ingress.http.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, first_problem, json_refused
from ingress.shutdown import DRAIN
from ingress.state import APP_STATE
from schemas.http import CreditStats, GrantCredits, ResetCredits

routes = web.RouteTableDef()
SERVICE = "gatekeeper-ingress"
GRANTED = {201: "Granted: the new balance", 200: "Granted before under this idempotencyKey: nothing applied"}


async def _probe(name: str, check: Any, timeout_s: float = 1.0) -> tuple[str, str | None]:
    try:
        async with asyncio.timeout(timeout_s):
            await check()
        return name, None
    except Exception as exc:
        return name, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@routes.get("/health")
@documented({200: "ok: RabbitMQ, Redis and PostgreSQL answer", 503: "degraded (causes: which failed), or draining"})
async def health(request: web.Request) -> web.Response:
    """Health for load balancers: every dependency probed; 503 while one fails or the node drains."""
    state = request.app[APP_STATE]
    if (drain := request.app.get(DRAIN)) and drain.draining:  # shutting down: send new clients elsewhere
        return web.json_response(
            {
                "status": "draining",
                "service": SERVICE,
                "node": state.settings.node_id,
                "timestamp": int(time.time() * 1000),
                "uptime": round(time.monotonic() - state.started, 3),
            },
            status=503,
        )

    async def rabbitmq() -> None:
        if not state.publisher.connected:
            raise ConnectionError("not connected")

    results = await asyncio.gather(
        _probe("rabbitmq", rabbitmq),
        _probe("redis", state.redis.ping),
        _probe("postgres", lambda: db.ping(state.pool)),
    )
    causes = {name: error for name, error in results if error}
    body: dict[str, Any] = {
        "status": "degraded" if causes else "ok",
        "service": SERVICE,
        "node": state.settings.node_id,
        "timestamp": int(time.time() * 1000),
        "uptime": round(time.monotonic() - state.started, 3),
    }
    if causes:
        body["causes"] = causes
    return web.json_response(body, status=503 if causes else 200)


def require_admin(request: web.Request) -> None:
    s = request.app[APP_STATE].settings
    if not is_admin_request(
        request, s.admin_token.get_secret_value(), s.jwt_secret.get_secret_value(), leeway_s=s.jwt_leeway_s
    ):
        raise Forbidden("admin only")


def bearer_identity(request: web.Request) -> Identity:
    """The caller's identity from its Bearer JWT (signature, ``exp`` and JWT_LEEWAY_S checked)."""
    s = request.app[APP_STATE].settings
    return decode_token(bearer_token(request), s.jwt_secret.get_secret_value(), leeway_s=s.jwt_leeway_s)


def bearer_caller(request: web.Request, missing: str) -> Identity:
    """The caller of a route that wants a Bearer JWT: 401 ``missing`` without one, 401 for a bad one."""
    if bearer_token(request) is None:
        raise Unauthorized(missing)
    try:
        return bearer_identity(request)
    except auth.Unauthorized:
        raise Unauthorized("invalid or expired token") from None


def grant_conflict(result: GrantResult, requested: int) -> Conflict:
    """409 for an idempotency key replayed with another amount: nothing was applied."""
    return Conflict(
        f"idempotencyKey was already used for a grant of {result.granted} credits, not {requested}",
        code="idempotency_conflict",
    )


def _caller_may_read(request: web.Request, user_id: str) -> bool:
    s = request.app[APP_STATE].settings
    if is_admin_request(
        request, s.admin_token.get_secret_value(), s.jwt_secret.get_secret_value(), leeway_s=s.jwt_leeway_s
    ):
        return True
    try:
        return bearer_identity(request).user_id == user_id
    except auth.Unauthorized:
        return False


def json_body_limits(request: web.Request) -> JsonLimits:
    """How deep a request body may nest (JSON_MAX_DEPTH); its size is bounded where it is read."""
    return JsonLimits(request.app[APP_STATE].settings.json_max_depth, None)


async def parse_body(request: web.Request, model: type[BaseModel]) -> Any:
    """The body as ``model``, or BadRequest: too deep (JSON_MAX_DEPTH), not JSON, or not valid."""
    body = await request.read()
    try:
        json_limits.check(body, json_body_limits(request))
    except JsonLimitError as exc:
        raise json_refused(exc) from None
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(first_problem(exc)) from None


def _user_id(request: web.Request) -> str:
    user_id = request.match_info["userId"]
    if not 1 <= len(user_id) <= 128:
        raise BadRequest("bad userId")
    return user_id


@routes.get("/api/credits/stats/{userId}")
@documented({200: CreditStats}, BadRequest, Forbidden, NotFound, auth=ADMIN_OR_JWT)
async def credit_stats(request: web.Request) -> web.Response:
    """A user's balance and totals, for that user or an admin.

    Read from a replica when DATABASE_READ_URL is set: it may lag.
    """
    user_id = _user_id(request)
    if not _caller_may_read(request, user_id):
        raise Forbidden("only that user or an admin may read these stats")
    state = request.app[APP_STATE]
    async with state.reads.acquire() as conn:  # a replica when DATABASE_READ_URL is set: may lag
        stats = await ledger.account_stats(conn, ledger.user_account(user_id))
    if stats is None:
        raise NotFound(f"no account for user {user_id!r}", code="unknown_user")
    body = CreditStats(
        userId=user_id,
        credits=stats.balance.credits,
        wordsLeft=stats.balance.live_words_left(time.time()),
        wordsUsedTotal=stats.words_used_total,
        creditsChargedTotal=stats.credits_charged_total,
    )
    return web.json_response(body.model_dump())


@routes.post("/api/credits/grant/{userId}")
@documented(GRANTED, BadRequest, Forbidden, Conflict, auth=ADMIN_OR_JWT, body=GrantCredits)
async def grant_credits(request: web.Request) -> web.Response:
    """Grant credits to a user (admins), once per idempotencyKey."""
    require_admin(request)
    user_id = _user_id(request)
    body: GrantCredits = await parse_body(request, GrantCredits)
    state = request.app[APP_STATE]
    result = await grants.grant(
        state.pool,
        ledger.user_account(user_id),
        body.credits,
        body.reason,
        body.idempotencyKey,
        state.settings.signup_credits,
    )
    if result.conflict:
        raise grant_conflict(result, body.credits)
    return web.json_response(
        {
            "userId": user_id,
            "applied": result.applied,
            "credits": result.credits,
            "wordsLeft": result.words_left,
        },
        status=201 if result.applied else 200,
    )


@routes.post("/api/credits/reset/{userId}")
@documented({200: "The new balance"}, BadRequest, Forbidden, auth=ADMIN_OR_JWT, body=ResetCredits)
async def reset_credits(request: web.Request) -> web.Response:
    """Set a user's balance (admins): the difference is booked as an adjustment."""
    require_admin(request)
    user_id = _user_id(request)
    body: ResetCredits = await parse_body(request, ResetCredits)
    state = request.app[APP_STATE]
    try:
        result = await grants.reset(state.pool, user_id, body.credits, body.reason, f"reset:{uuid.uuid4()}")
    except DomainError as exc:
        raise BadRequest(str(exc), code=exc.code) from None
    return web.json_response({"userId": user_id, "credits": result.credits, "wordsLeft": result.words_left})


@routes.get("/api/chat/stats")
@documented({200: "Connections and rooms across the nodes, and message counts"})
async def chat_stats(request: web.Request) -> web.Response:
    """Chat statistics of the whole cluster."""
    state = request.app[APP_STATE]
    cluster = await state.presence.cluster_stats()
    names = ("accepted", "delivered", "blocked")
    counts = await state.redis.mget([state.settings.key("stats", n) for n in names])
    totals = {name: int(value or 0) for name, value in zip(names, counts, strict=True)}
    return web.json_response(
        {
            **cluster,
            "messagesAccepted": totals["accepted"],
            "messagesDelivered": totals["delivered"],
            "messagesBlocked": totals["blocked"],
        }
    )
