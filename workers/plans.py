"""Actors of the ``billing`` queue for plans: Stripe subscription/invoice events and AI usage metering.

Metering is scheduled by :class:`MeterTicker`: every billing worker process runs a loop on
dramatiq's event loop that reports pending usage every ``METER_REPORT_INTERVAL_S`` seconds; a
PostgreSQL advisory lock lets one process at a time report, so any number of billing processes
(and restarts) neither double the work nor stop it. ``REPORT_USAGE_ACTOR`` runs one report on
demand (publish a ``ReportUsage`` command to the ``billing`` queue).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

import dramatiq
import structlog
from dramatiq.asyncio import get_event_loop_thread

from schemas.billing import ReportUsage, StripeEvent
from schemas.queues import BILLING_QUEUE, REPORT_USAGE_ACTOR, STRIPE_SUBSCRIPTION_ACTOR
from workers import metering, plans_service
from workers.broker import broker, resources, settings, shutdown
from workers.chat import RETRY_POLICY
from workers.effects import carry_out

log = structlog.get_logger(__name__)


@dramatiq.actor(queue_name=BILLING_QUEUE, actor_name=STRIPE_SUBSCRIPTION_ACTOR, **RETRY_POLICY)
async def billing_stripe_subscription(command: dict[str, Any]) -> str:
    cmd = StripeEvent.model_validate(command)
    res = await resources.get()
    s = res.settings
    outcome = await plans_service.apply_event(res.pool, cmd, s.plan_catalog, s.signup_credits)
    await carry_out(res.emitter, res.publisher, outcome)
    log.info("command.done", command_id=cmd.command_id, status=outcome.status, duplicate=not outcome.fresh)
    return outcome.log_status  # for the event log (workers/event_log.py)


class _Reporter:
    """The per-process Stripe client, made on first use on the event loop."""

    def __init__(self) -> None:
        self._client: Any = None

    async def run(self) -> metering.ReportResult:
        if self._client is None:
            self._client = metering.meter_client(settings)
        if self._client is None:
            return metering.ReportResult(skipped=True)
        res = await resources.get()
        return await metering.report_pending(res.pool, self._client, settings.meter_batch_size)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


reporter = _Reporter()
shutdown.register(reporter.close)


@dramatiq.actor(queue_name=BILLING_QUEUE, actor_name=REPORT_USAGE_ACTOR, max_retries=0)
async def billing_report_usage(command: dict[str, Any]) -> str:
    ReportUsage.model_validate(command)
    result = await reporter.run()
    log.info("metering.run", sent=result.sent, failed=result.failed, skipped=result.skipped)
    # Usage a run could not send stays pending for the next one; a skipped run (not configured) did nothing.
    return "rejected" if result.skipped else "applied"


class MeterTicker(dramatiq.Middleware):
    """Reports AI usage every interval in worker processes that consume the billing queue."""

    def __init__(self) -> None:
        self._future: Future | None = None

    def after_worker_boot(self, broker, worker) -> None:
        queues = worker.consumer_whitelist
        if queues and BILLING_QUEUE not in queues:
            return
        if not (settings.stripe_secret_key.get_secret_value() and settings.stripe_meter_event_name):
            log.info("metering.disabled", reason="STRIPE_SECRET_KEY or STRIPE_METER_EVENT_NAME is empty")
            return
        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            self._future = asyncio.run_coroutine_threadsafe(self._loop(), loop_thread.loop)
            log.info("metering.started", interval_s=settings.meter_report_interval_s)

    def before_worker_shutdown(self, broker, worker) -> None:
        if self._future is not None:
            self._future.cancel()
            self._future = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(settings.meter_report_interval_s)
            try:
                await reporter.run()
            except Exception:
                log.exception("metering.run_failed")


broker.add_middleware(MeterTicker())
