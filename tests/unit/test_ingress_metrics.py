"""How an ingress node classifies what it counts (the e2e test covers the wiring)."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from ingress.metrics import IngressMetrics


def sample(metrics: IngressMetrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


def body(payload: object) -> bytes:
    return json.dumps(payload).encode()


def test_webhook_results_by_answer() -> None:
    m = IngressMetrics()
    m.http_response("POST", "/webhooks/meta", 200, body({"received": 2, "duplicates": 0, "skipped": 0}))
    m.http_response("POST", "/webhooks/meta", 200, body({"received": 0, "duplicates": 2, "skipped": 0}))
    m.http_response("POST", "/webhooks/twilio", 200, b"<Response></Response>")
    m.http_response("POST", "/webhooks/stripe", 200, body({"received": True, "ignored": True}))
    m.http_response("POST", "/webhooks/stripe", 200, body({"received": True, "ignored": True, "invalid": "x"}))
    m.http_response("POST", "/webhooks/lemonsqueezy", 503, body({"error": {"code": "unavailable", "message": "x"}}))
    m.http_response("GET", "/webhooks/meta", 403, body({"error": {"code": "forbidden", "message": "x"}}))
    name = "gatekeeper_ingress_webhooks_total"
    assert sample(m, name, provider="meta", result="accepted") == 1
    assert sample(m, name, provider="meta", result="duplicate") == 1
    assert sample(m, name, provider="twilio", result="accepted") == 1
    assert sample(m, name, provider="stripe", result="ignored") == 1
    assert sample(m, name, provider="stripe", result="invalid") == 1
    assert sample(m, name, provider="lemonsqueezy", result="unavailable") == 1
    assert sample(m, name, provider="meta", result="forbidden") == 0  # the GET handshake is no delivery
    rejections = "gatekeeper_ingress_rejections_total"
    assert sample(m, rejections, channel="http", reason="unavailable") == 1
    assert sample(m, rejections, channel="http", reason="forbidden") == 1


def test_http_rejection_without_a_json_error_uses_the_status() -> None:
    m = IngressMetrics()
    m.http_response("GET", "/nowhere", 404, b"404: Not Found")
    m.http_response("GET", "/health", 200, body({"status": "ok"}))
    assert sample(m, "gatekeeper_ingress_rejections_total", channel="http", reason="http_404") == 1


def test_delivery_latency_and_worker_rejections() -> None:
    m = IngressMetrics()
    m.relayed("newMessage", {"timestamp": 1_000, "kind": "user"}, remote=True, now_ms=1_250)
    m.relayed("newMessage", [{"timestamp": 5_000, "kind": "ai"}], remote=True, now_ms=4_000)  # clock skew: 0
    m.relayed("creditError", {"code": "insufficient_credits"}, remote=True)
    m.relayed("error", {"code": "bad_request"}, remote=False)  # this node's own rejection, counted already
    m.relayed("newMessage", {"timestamp": True}, remote=True)  # not a timestamp
    latency = "gatekeeper_ingress_delivery_latency_seconds"
    assert sample(m, f"{latency}_count", event="newMessage", kind="user") == 1
    assert sample(m, f"{latency}_sum", event="newMessage", kind="user") == 0.25
    assert sample(m, f"{latency}_sum", event="newMessage", kind="ai") == 0
    assert sample(m, f"{latency}_count", event="newMessage", kind="unknown") == 0
    rejections = "gatekeeper_ingress_rejections_total"
    assert sample(m, rejections, channel="worker", reason="insufficient_credits") == 1
    assert sample(m, rejections, channel="worker", reason="bad_request") == 0


def test_each_node_has_its_own_registry() -> None:
    a, b = IngressMetrics(), IngressMetrics()
    a.connected()
    a.event("sendMessage")
    assert sample(a, "gatekeeper_ingress_connections") == 1
    assert sample(b, "gatekeeper_ingress_connections") == 0
    assert sample(b, "gatekeeper_ingress_socket_events_total", event="sendMessage") == 0


async def test_labels_come_from_route_templates_not_from_the_url() -> None:
    """Through the real middleware: 40 random webhook URLs add no series; known routes still count."""
    from aiohttp import ClientSession, web
    from aiohttp.test_utils import TestServer

    from ingress.metrics import METRICS, metrics_middleware

    async def accepted(request: web.Request) -> web.Response:
        return web.json_response({"received": True})

    app = web.Application(middlewares=[metrics_middleware])
    m = app[METRICS] = IngressMetrics()
    app.router.add_post("/webhooks/stripe", accepted)
    app.router.add_post("/webhooks/{provider}/echo", accepted)  # a template with a variable part
    probes = [f"probe{i:02d}x" for i in range(40)]
    async with TestServer(app) as server, ClientSession() as http:
        for probe in probes:
            async with http.post(server.make_url(f"/webhooks/{probe}")) as resp:
                assert resp.status == 404
            async with http.post(server.make_url(f"/webhooks/{probe}/echo")) as resp:
                assert resp.status == 200
        async with http.post(server.make_url("/webhooks/stripe")) as resp:
            assert resp.status == 200
    text = m.exposition().decode()
    assert not any(probe in text for probe in probes)
    assert sample(m, "gatekeeper_ingress_webhooks_total", provider="stripe", result="accepted") == 1
    assert sample(m, "gatekeeper_ingress_rejections_total", channel="http", reason="http_404") == 40
