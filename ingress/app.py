"""The ingress application factory: every resource's lifetime is one cleanup context."""

from __future__ import annotations

from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from infra import db
from infra.json_limits import JsonLimits
from infra.publisher import CommandPublisher
from infra.redis_clients import redis_client, socketio_manager
from infra.settings import Settings
from ingress.correlation import log_context_middleware
from ingress.http import admin_api, openapi
from ingress.http.admin_throttle import admin_auth_throttle_middleware
from ingress.http.analytics_api import analytics_routes
from ingress.http.billing_api import billing_routes, stripe_client_context
from ingress.http.conversations_api import conversation_routes
from ingress.http.dev_tokens import dev_token_routes
from ingress.http.edges import json_api_headers, refuse_unstorable_middleware
from ingress.http.errors import http_error_middleware
from ingress.http.history_api import history_routes
from ingress.http.http_api import routes
from ingress.http.plans_api import plans_routes
from ingress.http.room_messages_api import room_message_routes
from ingress.http.tenant_api import tenant_routes
from ingress.http.wallet_api import chain_client_context, wallet_routes
from ingress.http.web_routes import socket_origins, web_routes
from ingress.metrics import METRICS, IngressMetrics, metrics_listener_context, metrics_middleware, metrics_routes
from ingress.presence import Presence
from ingress.rate_limiter import RateLimiter
from ingress.shutdown import DRAIN, Drain, drain_middleware
from ingress.socket_server import AckAwareServer, bounded_packets
from ingress.sockets import ChatSockets
from ingress.state import APP_STATE, IngressState
from ingress.webhooks.billing import billing_webhook_routes
from ingress.webhooks.channels import webhook_routes
from schemas.queues import WORK_QUEUES

log = structlog.get_logger(__name__)

MAX_FRAME_BYTES = 64 * 1024  # a 4000-character message fits many times over


def init_app(settings: Settings) -> web.Application:
    app = web.Application(
        client_max_size=MAX_FRAME_BYTES,
        middlewares=[
            metrics_middleware,  # counts every answer, errors included
            log_context_middleware,
            drain_middleware,  # while draining, every answer closes its connection
            http_error_middleware,  # what handlers and the guards below raise (ingress/http/errors.py)
            refuse_unstorable_middleware,
            admin_auth_throttle_middleware,
        ],
    )
    app.on_response_prepare.append(json_api_headers)  # nosniff + no-store on JSON APIs (ingress/http/edges.py)
    metrics = app[METRICS] = IngressMetrics()  # this node's own registry, served at /metrics
    sio = AckAwareServer(
        async_mode="aiohttp",
        client_manager=socketio_manager(settings.effective_redis_url, settings.key("socketio"), **settings.redis_pool),
        cors_allowed_origins=socket_origins(settings.allowed_origins, settings.trusted_proxy_networks),  # + own pages
        max_http_buffer_size=MAX_FRAME_BYTES,
        # Packets over JSON_MAX_DEPTH, and binary ones, close their connection (ingress/socket_server.py).
        serializer=bounded_packets(JsonLimits(settings.json_max_depth, MAX_FRAME_BYTES)),
        ping_interval=25,
        ping_timeout=20,
        logger=False,
        engineio_logger=False,
    )
    sio.attach(app)
    app[DRAIN] = Drain(sio, sio.in_flight)  # SIGTERM drains the node (ingress/shutdown.py)
    metrics.instrument(sio.manager)
    app.router.add_routes(routes)
    app.router.add_routes(tenant_routes)
    app.router.add_routes(webhook_routes)
    app.router.add_routes(analytics_routes)
    app.router.add_routes(billing_routes)
    app.router.add_routes(billing_webhook_routes)
    app.router.add_routes(history_routes)
    app.router.add_routes(room_message_routes)  # a room's messages by seq (catching up)
    app.router.add_routes(wallet_routes)
    app.router.add_routes(plans_routes)
    app.router.add_routes(metrics_routes)
    app.router.add_routes(conversation_routes)  # the operator console's live inbox
    admin_api.install(app, settings)  # queues, dead letters and chart series for the admin console
    app.router.add_routes(dev_token_routes)
    app.router.add_routes(web_routes)  # the chat page, the console and their static files
    openapi.install(app)  # GET /api/openapi.json, built from the routes above

    async def resources(app: web.Application) -> AsyncIterator[None]:
        await db.migrate(settings.database_url)
        pool = await db.create_pool(settings.database_url)
        read_pool = await db.create_pool(settings.database_read_url) if settings.database_read_url else None
        redis = redis_client(settings.effective_redis_url, **settings.redis_pool)
        publisher = CommandPublisher(
            settings.amqp_url, WORK_QUEUES, settings.publish_timeout_s, queue_type=settings.amqp_queue_type
        )
        presence = Presence(redis, settings.key_prefix, settings.node_id)
        await publisher.start()
        await presence.start()
        state = IngressState(settings, pool, redis, publisher, presence, read_pool=read_pool)
        app[APP_STATE] = state
        sockets = ChatSockets(
            sio,
            settings,
            presence,
            publisher,
            RateLimiter(redis, settings.key_prefix, settings.rate_windows),
            redis,
            pool,
            metrics,
        )
        sockets.loop_lag.start()
        log.info("ingress.started", node=settings.node_id)
        yield
        log.info("ingress.stopping", node=settings.node_id)
        await sockets.loop_lag.stop()
        await sio.shutdown()
        await sockets.read_marks.flush_all()  # read marks held for the end of their interval
        await sockets.sends.drain()  # sends in a flush are confirmed and answered before the publisher closes
        await sockets.calls.registry.close()  # its last queued presence writes, before the node key goes
        await presence.stop()
        await publisher.close()
        await sockets.accepted.close()  # the statistics counted since the last flush
        await redis.aclose()
        await pool.close()
        if read_pool is not None:
            await read_pool.close()

    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(metrics_listener_context(settings, metrics))  # METRICS_HOST:METRICS_PORT
    app.cleanup_ctx.append(stripe_client_context(settings))
    app.cleanup_ctx.append(chain_client_context(settings))
    return app
