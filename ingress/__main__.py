"""``python -m ingress --host 127.0.0.1 --port 8080`` starts one ingress node."""

from __future__ import annotations

import argparse

from aiohttp import web
from sentry_sdk.integrations.aiohttp import AioHttpIntegration

from infra.logging import configure_logging
from infra.sentry import init_sentry
from infra.settings import Settings
from ingress.app import init_app


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m ingress", description="Run one Gatekeeper ingress node.")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    args = parser.parse_args()
    if "node_id" not in settings.model_fields_set:
        settings = settings.model_copy(update={"node_id": f"{settings.node_id}-{args.port}"})
    configure_logging(settings.log_level, settings.log_format, service="ingress", node=settings.node_id)
    init_sentry(settings, "ingress", [AioHttpIntegration()])
    web.run_app(init_app(settings), host=args.host, port=args.port, print=None, shutdown_timeout=10)


if __name__ == "__main__":
    main()
