"""``python -m ingress --host 127.0.0.1 --port 8080`` starts one ingress node."""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web
from sentry_sdk.integrations.aiohttp import AioHttpIntegration

from infra import event_loop
from infra.logging import configure_logging
from infra.recursion_limit import pin_recursion_limit
from infra.sentry import init_sentry
from infra.settings import Settings
from ingress.app import init_app
from ingress.shutdown import serve


def build(argv: list[str] | None = None) -> tuple[web.Application, str, int, float]:
    """Everything before serving: settings, logging, Sentry, the app, and the recursion limit
    pinned once all of that is imported (infra/recursion_limit.py)."""
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m ingress", description="Run one Gatekeeper ingress node.")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    args = parser.parse_args(argv)
    if "node_id" not in settings.model_fields_set:
        settings = settings.model_copy(update={"node_id": f"{settings.node_id}-{args.port}"})
    configure_logging(settings.log_level, settings.log_format, service="ingress", node=settings.node_id)
    init_sentry(settings, "ingress", [AioHttpIntegration()])
    event_loop.install(settings.event_loop)
    app = init_app(settings)
    pin_recursion_limit()
    return app, args.host, args.port, settings.shutdown_timeout_s


def main() -> int:
    app, host, port, shutdown_timeout_s = build()
    # SIGTERM / SIGINT drain the node within SHUTDOWN_TIMEOUT_S (ingress/shutdown.py).
    return asyncio.run(serve(app, host, port, shutdown_timeout_s))


if __name__ == "__main__":
    sys.exit(main())
