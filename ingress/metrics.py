"""Prometheus metrics of one ingress node, served at ``GET /metrics``: on the public port only
with ``METRICS_TOKEN`` (as a Bearer), and on the private ``METRICS_HOST:METRICS_PORT`` listener.

Each node (process) has its own registry; Prometheus scrapes every node and sums. The
instrumentation stays out of the handlers: socket events are counted by the guard in
ingress.sockets, webhooks and HTTP rejections by an aiohttp middleware that reads the
response (status and the ``{"error": {"code"}}`` body every route already returns), and
deliveries by a hook on the Socket.IO pub/sub manager, where this node relays results
(published by workers or other nodes) to its own clients.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import socketio
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from infra import json_limits
from infra.redis_clients import BATCH_EVENT, BATCH_ROOM
from infra.settings import Settings
from ingress.auth import bearer_token
from ingress.http.api_docs import SecurityScheme, documented
from ingress.http.errors import NotFound, Unauthorized, http_error_middleware
from ingress.state import APP_STATE

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Events a worker emits to tell a client its command was refused (each carries a ``code``).
WORKER_REJECTION_EVENTS = frozenset({"creditError", "quotaExceeded", "agentError", "error"})
RESPONSE_JSON_LIMITS = json_limits.JsonLimits(max_bytes=16 * 1024)  # larger bodies are not read
UNINSTRUMENTED_PATHS = ("/socket.io", "/metrics")
EXPOSITION = {200: "The Prometheus text exposition of this node's registry"}
METRICS_TOKEN = SecurityScheme("metricsToken", {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN"})

log = structlog.get_logger(__name__)


class IngressMetrics:
    """The metrics of one node, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "gatekeeper_ingress_connections", "Socket.IO clients connected to this node now.", registry=self.registry
        )
        self.events = Counter(
            "gatekeeper_ingress_socket_events",
            "Socket.IO events received, by event name.",
            ["event"],
            registry=self.registry,
        )
        self.ack_latency = Histogram(
            "gatekeeper_ingress_ack_latency_seconds",
            "From receiving a socket event to its ack (for sendMessage: after RabbitMQ confirmed the command).",
            ["event", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "gatekeeper_ingress_delivery_latency_seconds",
            "From a message's timestamp (ingress acceptance of its command) to this node relaying it to its clients.",
            ["event", "kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.webhooks = Counter(
            "gatekeeper_ingress_webhooks",
            "Provider webhook deliveries, by provider and result.",
            ["provider", "result"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "gatekeeper_ingress_rejections",
            "Requests refused, by where they were refused and the error code.",
            ["channel", "reason"],
            registry=self.registry,
        )

    def watch_backlog(self, delay_s: Callable[[], float], waiting: Callable[[], int]) -> None:
        """The chat backlog as this node sees it (ingress/chat_backlog.py), read at each scrape."""
        Gauge(
            "gatekeeper_ingress_chat_backlog_seconds",
            "How far behind the chat workers are for this node's sends: the longer of how long its oldest"
            " waiting sends have waited and how long a new one would wait (waiting sends over the rate the"
            " workers answer them); past CHAT_BACKLOG_MAX_MS new sends are refused (overloaded).",
            registry=self.registry,
        ).set_function(delay_s)
        Gauge(
            "gatekeeper_ingress_chat_sends_waiting",
            "Chat sends this node published that the workers have not answered yet.",
            registry=self.registry,
        ).set_function(waiting)

    def watch_loop_lag(self, lag_s: Callable[[], float]) -> None:
        Gauge(
            "gatekeeper_ingress_event_loop_lag_seconds",
            "How late this node's event loop runs a timer (ingress/loop_lag.py); past"
            " SEND_MAX_LOOP_LAG_MS chat sends are refused (overloaded).",
            registry=self.registry,
        ).set_function(lag_s)

    # --- sockets ----------------------------------------------------------------------------
    def connected(self) -> None:
        self.connections.inc()

    def disconnected(self) -> None:
        self.connections.dec()

    def event(self, name: str) -> None:
        self.events.labels(name).inc()

    def acked(self, event: str, status: str, seconds: float) -> None:
        self.ack_latency.labels(event, status).observe(max(seconds, 0.0))

    def rejected(self, channel: str, reason: str) -> None:
        self.rejections.labels(channel, reason).inc()

    # --- deliveries -------------------------------------------------------------------------
    def relayed(self, event: str, data: Any, *, remote: bool, now_ms: int | None = None) -> None:
        """One pub/sub emit this node delivers to at least one of its own clients."""
        payload = data[0] if isinstance(data, list) and len(data) == 1 else data
        if not isinstance(payload, dict):
            return
        timestamp = payload.get("timestamp")
        if event == "newMessage" and isinstance(timestamp, int) and not isinstance(timestamp, bool):
            now_ms = int(time.time() * 1000) if now_ms is None else now_ms
            kind = payload.get("kind")
            self.delivery_latency.labels(event, kind if isinstance(kind, str) else "unknown").observe(
                max(now_ms - timestamp, 0) / 1000
            )
        code = payload.get("code")
        if remote and event in WORKER_REJECTION_EVENTS and isinstance(code, str):
            self.rejected("worker", code)

    def instrument(self, manager: socketio.AsyncPubSubManager) -> None:
        """Observe every emit the manager relays from Redis to local clients."""
        handle_emit: Callable[[dict], Awaitable[None]] = manager._handle_emit

        async def observed(message: dict) -> None:
            try:
                self._observe_relay(manager, message)
            except Exception:  # a metric must never stop a delivery
                pass
            await handle_emit(message)

        manager._handle_emit = observed

    def _observe_relay(self, manager: socketio.AsyncPubSubManager, message: dict) -> None:
        if message.get("binary"):
            return
        namespace = message.get("namespace") or "/"
        remote = message.get("host_id") != manager.host_id
        if message.get("room") == BATCH_ROOM and message.get("event") == BATCH_EVENT:  # a worker's batch of results
            items = data if isinstance(data := message.get("data"), list) else []
            emits = [(i.get("event"), i.get("room"), i.get("data")) for i in items if isinstance(i, dict)]
        else:
            emits = [(message.get("event"), message.get("room"), message.get("data"))]
        for event, room, data in emits:
            if room is None or any(True for _ in manager.get_participants(namespace, room)):
                self.relayed(str(event), data, remote=remote)

    # --- HTTP -------------------------------------------------------------------------------
    def http_response(self, method: str, route: str, status: int, body: Any) -> None:
        """Count a webhook delivery (by its result) and any refused HTTP request (by its error code).

        ``route`` is the matched route's template (``route_template``), never the raw path: a label
        taken from the URL would let anyone mint a new time series per request.
        """
        error = _error_code(body)
        parts = route.strip("/").split("/")
        if method == "POST" and len(parts) == 2 and parts[0] == "webhooks" and "{" not in parts[1]:
            self.webhooks.labels(parts[1], _webhook_result(status, body, error)).inc()
        if status >= 400:
            self.rejected("http", error or f"http_{status}")

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _json(body: Any) -> Any:
    if not isinstance(body, bytes | bytearray):
        return None
    try:
        return json_limits.loads(body, RESPONSE_JSON_LIMITS)  # error and webhook answers are small
    except ValueError:
        return None


def _error_code(body: Any) -> str | None:
    parsed = _json(body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _webhook_result(status: int, body: Any, error: str | None) -> str:
    """``accepted``, ``duplicate``, ``ignored``, ``invalid``, or the error code of a refusal."""
    if status < 300:
        parsed = _json(body)
        if isinstance(parsed, dict):
            if parsed.get("invalid"):  # signed, but unusable: acknowledged so the provider stops
                return "invalid"
            if parsed.get("ignored") is True:
                return "ignored"
            if parsed.get("duplicate") is True or (parsed.get("duplicates") and not parsed.get("received")):
                return "duplicate"
        return "accepted"
    return error or f"http_{status}"


METRICS = web.AppKey("metrics", IngressMetrics)
UNMATCHED = "unmatched"  # the route label of a request no route matched (404, 405)


def route_template(request: web.Request) -> str:
    """The matched route's template (``/api/credits/stats/{userId}``), or ``unmatched``."""
    info = request.match_info
    if info.http_exception is not None:
        return UNMATCHED
    resource = info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(UNINSTRUMENTED_PATHS):
        return await handler(request)
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        metrics.http_response(request.method, route_template(request), exc.status, exc.body)
        raise
    body = response.body if isinstance(response, web.Response) else None
    metrics.http_response(request.method, route_template(request), response.status, body)
    return response


metrics_routes = web.RouteTableDef()


def _exposition(request: web.Request, metrics: IngressMetrics, token: str) -> web.Response:
    provided = bearer_token(request) or ""
    if token and not hmac.compare_digest(provided.encode("utf-8", "replace"), token.encode("utf-8")):
        raise Unauthorized("GET /metrics needs Authorization: Bearer <METRICS_TOKEN>")
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@metrics_routes.get("/metrics")
@documented(EXPOSITION, Unauthorized, NotFound, auth=(METRICS_TOKEN,), media_type=CONTENT_TYPE_LATEST)
async def metrics_endpoint(request: web.Request) -> web.Response:
    """On the public port only with ``METRICS_TOKEN``; without one, only the private listener serves it."""
    token = request.app[APP_STATE].settings.metrics_token.get_secret_value()
    if not token:
        raise NotFound("no /metrics here: see METRICS_HOST/METRICS_PORT or set METRICS_TOKEN")
    return _exposition(request, request.app[METRICS], token)


def metrics_listener_context(
    settings: Settings, metrics: IngressMetrics
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Serve ``GET /metrics`` on ``METRICS_HOST:METRICS_PORT`` (a private listener; off when 0)."""
    token = settings.metrics_token.get_secret_value()

    async def serve(request: web.Request) -> web.Response:
        return _exposition(request, metrics, token)

    async def listener(app: web.Application) -> AsyncIterator[None]:
        if not settings.metrics_port:
            yield
            return
        side = web.Application(middlewares=[http_error_middleware])
        side.router.add_get("/metrics", serve)
        runner = web.AppRunner(side, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
            log.info("ingress.metrics_serving", host=settings.metrics_host, port=settings.metrics_port)
            yield
        finally:
            await runner.cleanup()

    return listener
