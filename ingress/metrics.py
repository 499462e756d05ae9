"""Prometheus metrics of one ingress node, served at ``GET /metrics``.

Each node (process) has its own registry; Prometheus scrapes every node and sums. The
instrumentation stays out of the handlers: socket events are counted by the guard in
ingress.sockets, webhooks and HTTP rejections by an aiohttp middleware that reads the
response (status and the ``{"error": {"code"}}`` body every route already returns), and
deliveries by a hook on the Socket.IO pub/sub manager, where this node relays results
(published by workers or other nodes) to its own clients.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ingress.auth import bearer_token
from ingress.http_api import json_error
from ingress.state import APP_STATE

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Events a worker emits to tell a client its command was refused (each carries a ``code``).
WORKER_REJECTION_EVENTS = frozenset({"creditError", "quotaExceeded", "agentError", "error"})
UNINSTRUMENTED_PATHS = ("/socket.io", "/metrics")


class IngressMetrics:
    """The metrics of one node, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "gatekeeper_ingress_connections", "Socket.IO clients connected to this node now.", registry=self.registry
        )
        self.events = Counter(
            "gatekeeper_ingress_socket_events", "Socket.IO events received, by event name.", ["event"],
            registry=self.registry,
        )  # fmt: skip
        self.ack_latency = Histogram(
            "gatekeeper_ingress_ack_latency_seconds",
            "From receiving a socket event to its ack (for sendMessage: after RabbitMQ confirmed the command).",
            ["event", "status"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.delivery_latency = Histogram(
            "gatekeeper_ingress_delivery_latency_seconds",
            "From a message's timestamp (ingress acceptance of its command) to this node relaying it to its clients.",
            ["event", "kind"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.webhooks = Counter(
            "gatekeeper_ingress_webhooks", "Provider webhook deliveries, by provider and result.",
            ["provider", "result"], registry=self.registry,
        )  # fmt: skip
        self.rejections = Counter(
            "gatekeeper_ingress_rejections", "Requests refused, by where they were refused and the error code.",
            ["channel", "reason"], registry=self.registry,
        )  # fmt: skip

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

        manager._handle_emit = observed  # type: ignore[method-assign]

    def _observe_relay(self, manager: socketio.AsyncPubSubManager, message: dict) -> None:
        if message.get("binary"):
            return
        room = message.get("room")
        namespace = message.get("namespace") or "/"
        local = room is None or any(True for _ in manager.get_participants(namespace, room))
        if local:
            remote = message.get("host_id") != manager.host_id
            self.relayed(str(message.get("event")), message.get("data"), remote=remote)

    # --- HTTP -------------------------------------------------------------------------------
    def http_response(self, method: str, path: str, status: int, body: Any) -> None:
        """Count a webhook delivery (by its result) and any refused HTTP request (by its error code)."""
        error = _error_code(body)
        parts = path.strip("/").split("/")
        if method == "POST" and len(parts) == 2 and parts[0] == "webhooks":
            self.webhooks.labels(parts[1], _webhook_result(status, body, error)).inc()
        if status >= 400:
            self.rejected("http", error or f"http_{status}")

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _json(body: Any) -> Any:
    if not isinstance(body, bytes | bytearray):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _error_code(body: Any) -> str | None:
    parsed = _json(body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _webhook_result(status: int, body: Any, error: str | None) -> str:
    """``accepted``, ``duplicate``, ``ignored``, or the error code of a refusal."""
    if status < 300:
        parsed = _json(body)
        if isinstance(parsed, dict):
            if parsed.get("ignored") is True:
                return "ignored"
            if parsed.get("duplicate") is True or (parsed.get("duplicates") and not parsed.get("received")):
                return "duplicate"
        return "accepted"
    return error or f"http_{status}"


METRICS = web.AppKey("metrics", IngressMetrics)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(UNINSTRUMENTED_PATHS):
        return await handler(request)
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        metrics.http_response(request.method, request.path, exc.status, exc.body)
        raise
    body = response.body if isinstance(response, web.Response) else None
    metrics.http_response(request.method, request.path, response.status, body)
    return response


metrics_routes = web.RouteTableDef()


@metrics_routes.get("/metrics")
async def metrics_endpoint(request: web.Request) -> web.Response:
    token = request.app[APP_STATE].settings.metrics_token.get_secret_value()
    provided = bearer_token(request) or ""
    if token and not hmac.compare_digest(provided.encode("utf-8", "replace"), token.encode("utf-8")):
        return json_error(401, "unauthorized", "GET /metrics needs Authorization: Bearer <METRICS_TOKEN>")
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
