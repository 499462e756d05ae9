"""The admin console's APIs: queues, dead letters and chart series (admin only).

- ``GET /api/admin/queues``: the document ``python -m scripts.status --json`` prints (one row per
  capability, where the figures came from). Collected at most every :data:`QUEUE_STATS_MAX_AGE_S`
  per node, however many consoles poll it: the rabbitmqctl fallback starts an Erlang VM.
- ``GET /api/admin/dead-letters?queue=&actor=&since=&limit=``: dead messages as
  ``python -m scripts.dlq list --json`` shows them, with the inbox's error and the whole traceback
  (``queue=chat`` covers chat's partitions too; ``queue=chat.p2`` one partition).
- ``POST /api/admin/dead-letters/requeue`` ``{messageIds: [...]}`` or the list's filters; and
  ``POST /api/admin/dead-letters/purge`` ``{messageIds: [...]}`` (named messages only).
- ``GET /api/admin/series?metric=messages|credits|ai_tokens&minutes=60&step=60[&until=ISO]``:
  buckets from PostgreSQL's read pool (infra/admin_series.py says which table feeds which metric).

Everything here is non-blocking: queue figures come from aiohttp or an asyncio subprocess, dead
letters from aio-pika, series from asyncpg.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

import aio_pika
import asyncpg
import structlog
from aiohttp import web

from infra import admin_series, dead_letters
from infra.dead_letters import DeadMessage, Filters
from infra.queue_stats import QueueStats, QueueStatsUnavailable, collect
from infra.settings import Settings
from ingress.http.api_docs import ADMIN_OR_JWT, Query, documented, whole
from ingress.http.errors import BadRequest, Forbidden, Unavailable
from ingress.http.http_api import parse_body, require_admin
from ingress.state import APP_STATE
from schemas.admin import MAX_SELECTION, DeadLetterPurge, DeadLetterSelection
from schemas.queues import ALL_QUEUES, WORK_QUEUES

log = structlog.get_logger(__name__)

admin_routes = web.RouteTableDef()

QUEUE_STATS_MAX_AGE_S = 2.0
DEFAULT_DEAD_LIMIT = 100
MAX_MINUTES = 24 * 60
MIN_STEP_S, MAX_STEP_S = 10, 3600
MAX_BUCKETS = 1440
_AMQP_ERRORS = (OSError, ConnectionError, aio_pika.exceptions.AMQPError)
DEAD = {200: "messages (each with its error and traceback), and the limit"}
MOVED = {200: "requeued, undecodable (purge those) and missing (gone already) messages"}
PURGED = {200: "purged and missing (gone already) messages"}
DEAD_QUERY = (
    Query("queue", "A capability (chat covers its partitions) or one work queue, such as chat.p2"),
    Query("actor", "Only this actor's messages"),
    Query("since", "An ISO time (2026-11-23T10:00) or an age (90s, 15m, 2h, 7d)"),
    Query("limit", f"At most this many (default {DEFAULT_DEAD_LIMIT})", whole(1, MAX_SELECTION)),
)
SERIES = (
    Query("metric", f"One of {', '.join(admin_series.METRICS)}", {"enum": list(admin_series.METRICS)}, required=True),
    Query("minutes", f"The window, up to {MAX_MINUTES} (default 60)", whole(1, MAX_MINUTES)),
    Query("step", "Seconds per bucket, dividing the window (default 60)", whole(MIN_STEP_S, MAX_STEP_S)),
    Query("until", "The window's end, an ISO time (default now)"),
)


class QueueStatsCache:
    """One collection at a time, reused for ``max_age_s``: concurrent callers share it."""

    def __init__(self, settings: Settings, max_age_s: float = QUEUE_STATS_MAX_AGE_S) -> None:
        self._settings = settings
        self._max_age_s = max_age_s
        self._value: QueueStats | None = None
        self._at = 0.0
        self._task: asyncio.Task[QueueStats] | None = None

    async def get(self) -> QueueStats:
        if self._value is not None and time.monotonic() - self._at < self._max_age_s:
            return self._value
        if self._task is None:
            self._task = asyncio.create_task(self._collect())
            # Retrieved here too, so a failure nobody awaited any more is not reported as unhandled.
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(self._task)

    async def _collect(self) -> QueueStats:
        try:
            value = await collect(self._settings)
            self._value, self._at = value, time.monotonic()
            return value
        finally:
            self._task = None


QUEUE_STATS = web.AppKey("admin_queue_stats", QueueStatsCache)


def install(app: web.Application, settings: Settings) -> None:
    """The admin routes and the per-node queue figures cache."""
    app[QUEUE_STATS] = QueueStatsCache(settings)
    app.router.add_routes(admin_routes)


@admin_routes.get("/api/admin/queues")
@documented({200: QueueStats}, Forbidden, Unavailable, auth=ADMIN_OR_JWT)
async def queues(request: web.Request) -> web.Response:
    """Queue depths, rates and consumers per capability, as ``scripts.status --json`` (admins)."""
    require_admin(request)
    try:
        stats = await request.app[QUEUE_STATS].get()
    except QueueStatsUnavailable as exc:
        raise Unavailable(str(exc), code="queue_stats_unavailable") from None
    return web.json_response(stats.model_dump(mode="json"))


def _queue(value: str) -> str:
    """A capability (chat covers its partitions too) or one work queue such as ``chat.p2``."""
    name = value.removesuffix(".XQ").removesuffix(".DQ")
    if name not in WORK_QUEUES:
        raise BadRequest(f"queue: one of {', '.join(ALL_QUEUES)}, or a chat partition (chat.p0...)")
    return name


def _since(value: str) -> dt.datetime:
    try:
        return dead_letters.parse_since(value)
    except ValueError:
        raise BadRequest("since: an ISO time (2026-11-23T10:00) or an age (90s, 15m, 2h, 7d)") from None


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise BadRequest(f"{name}: a whole number from {low} to {high}")
    return int(value)


def _filters(
    queue: str | None, actor: str | None, since: str | None, limit: int | None, message_ids: list[str] | None = None
) -> Filters:
    return Filters(
        queues=dead_letters.queues_for(_queue(queue) if queue else None, WORK_QUEUES),
        actor=actor or None,
        since=_since(since) if since else None,
        limit=len(set(message_ids)) if message_ids else limit,
        message_ids=frozenset(message_ids) if message_ids else None,
    )


def _dead_json(dead: DeadMessage) -> dict[str, Any]:
    return {**dead.as_json(), "traceback": dead.traceback}


async def _with_inbox_errors(request: web.Request, found: list[DeadMessage]) -> None:
    """Best effort: without the database the errors come from the tracebacks."""
    try:
        await dead_letters.add_inbox_errors(request.app[APP_STATE].reads, found)
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("dead_letters.inbox_unavailable", error=type(exc).__name__)


def _amqp_down(exc: BaseException) -> Unavailable:
    return Unavailable(f"RabbitMQ: {type(exc).__name__}: {exc}", code="rabbitmq_unavailable")


@admin_routes.get("/api/admin/dead-letters")
@documented(DEAD, BadRequest, Forbidden, Unavailable, auth=ADMIN_OR_JWT, query=DEAD_QUERY)
async def list_dead_letters(request: web.Request) -> web.Response:
    """Dead messages with their errors and tracebacks, as ``scripts.dlq list --json`` (admins)."""
    require_admin(request)
    q = request.query
    limit = _int(q, "limit", DEFAULT_DEAD_LIMIT, 1, MAX_SELECTION)
    filters = _filters(q.get("queue"), q.get("actor"), q.get("since"), limit)
    try:
        found = await dead_letters.browse(request.app[APP_STATE].settings.amqp_url, filters)
    except _AMQP_ERRORS as exc:
        raise _amqp_down(exc) from None
    await _with_inbox_errors(request, found)
    return web.json_response({"messages": [_dead_json(d) for d in found], "limit": limit})


def _missing(asked: list[str] | None, found: list[DeadMessage]) -> list[str]:
    """Ids asked for and not met: gone already (requeued or purged by someone else), or being browsed."""
    seen = {d.message_id for d in found}
    return sorted(set(asked or ()) - seen)


@admin_routes.post("/api/admin/dead-letters/requeue")
@documented(MOVED, BadRequest, Forbidden, Unavailable, auth=ADMIN_OR_JWT, body=DeadLetterSelection)
async def requeue_dead_letters(request: web.Request) -> web.Response:
    """Requeue dead messages: those named, or up to the limit that match the filters (admins)."""
    require_admin(request)
    body: DeadLetterSelection = await parse_body(request, DeadLetterSelection)
    # Filters move at most MAX_SELECTION per call: one request stays short; call again for more.
    filters = _filters(body.queue, body.actor, body.since, body.limit or MAX_SELECTION, body.messageIds)
    try:
        found = await dead_letters.requeue(request.app[APP_STATE].settings.amqp_url, filters)
    except _AMQP_ERRORS as exc:
        raise _amqp_down(exc) from None
    moved = [d for d in found if d.body is not None]
    left = [d for d in found if d.body is None]
    log.info("dead_letters.requeued", count=len(moved), message_ids=[d.message_id for d in moved])
    return web.json_response(
        {
            "requeued": [_dead_json(d) for d in moved],
            "undecodable": [_dead_json(d) for d in left],  # cannot reach an actor: purge them
            "missing": _missing(body.messageIds, found),
        }
    )


@admin_routes.post("/api/admin/dead-letters/purge")
@documented(PURGED, BadRequest, Forbidden, Unavailable, auth=ADMIN_OR_JWT, body=DeadLetterPurge)
async def purge_dead_letters(request: web.Request) -> web.Response:
    """Delete dead messages, named one by one (admins)."""
    require_admin(request)
    body: DeadLetterPurge = await parse_body(request, DeadLetterPurge)
    filters = _filters(None, None, None, None, body.messageIds)
    try:
        found = await dead_letters.purge(request.app[APP_STATE].settings.amqp_url, filters)
    except _AMQP_ERRORS as exc:
        raise _amqp_down(exc) from None
    log.info("dead_letters.purged", count=len(found), message_ids=[d.message_id for d in found])
    return web.json_response({"purged": [_dead_json(d) for d in found], "missing": _missing(body.messageIds, found)})


def _until(value: str | None) -> dt.datetime:
    if not value:
        return dt.datetime.now(dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest("until: an ISO time such as 2026-11-23T10:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@admin_routes.get("/api/admin/series")
@documented({200: "Buckets of the metric over the window"}, BadRequest, Forbidden, auth=ADMIN_OR_JWT, query=SERIES)
async def series(request: web.Request) -> web.Response:
    """A chart series from PostgreSQL: messages, credits or AI tokens per bucket (admins)."""
    require_admin(request)
    q = request.query
    name = q.get("metric", "")
    if name not in admin_series.METRICS:
        raise BadRequest(f"metric: one of {', '.join(admin_series.METRICS)}")
    minutes = _int(q, "minutes", 60, 1, MAX_MINUTES)
    step = _int(q, "step", 60, MIN_STEP_S, MAX_STEP_S)
    if (minutes * 60) % step:
        raise BadRequest("step: must divide the window (minutes * 60) into whole buckets")
    if minutes * 60 // step > MAX_BUCKETS:
        raise BadRequest(f"step: at most {MAX_BUCKETS} buckets per window")
    until = _until(q.get("until"))
    metric = name
    async with request.app[APP_STATE].reads.acquire() as conn:  # a replica when DATABASE_READ_URL is set
        result = await admin_series.series(conn, metric, until, minutes, step)
    return web.json_response(
        {
            "metric": metric,
            "unit": admin_series.UNITS[metric],
            "source": admin_series.SOURCES[metric],
            "minutes": minutes,
            "step": step,
            "start": result.start.isoformat(),
            "end": result.end.isoformat(),
            "total": result.total,
            "points": [{"t": t.isoformat(), "v": v} for t, v in result.points],
        }
    )
