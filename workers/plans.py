"""Handlers of the ``billing`` queue for plans: Stripe subscription/invoice events and AI usage metering.

Metering is scheduled by :class:`MeterTicker`: every billing worker process runs a loop on
dramatiq's event loop that reports pending usage every ``METER_REPORT_INTERVAL_S`` seconds; a
PostgreSQL advisory lock lets one process at a time report, so any number of billing processes
(and restarts) neither double the work nor stop it. ``REPORT_USAGE_ACTOR`` runs one report on
demand (publish a ``ReportUsage`` command to the ``billing`` queue).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import dramatiq
import structlog
from dramatiq.asyncio import get_event_loop_thread

from infra.settings import Settings
from schemas.billing import ReportUsage, StripeEvent
from schemas.queues import BILLING_QUEUE, REPORT_USAGE_ACTOR, STRIPE_SUBSCRIPTION_ACTOR
from workers import metering, plans_service
from workers.effects import Outcome
from workers.handlers import Handlers
from workers.resources import Component, ResourceHolder, Resources

log = structlog.get_logger(__name__)

handlers = Handlers()


async def _close_meter_client(client: metering.MeterClient | None) -> None:
    if client is not None:
        await client.close()


# The per-process Stripe meter client (None when metering is off), shared by the ticker and the actor.
REPORTER: Component[metering.MeterClient | None] = Component("stripe_meter", metering.meter_client, _close_meter_client)


@handlers.on(STRIPE_SUBSCRIPTION_ACTOR)
async def stripe_subscription(res: Resources, cmd: StripeEvent) -> Outcome:
    s = res.settings
    return await plans_service.apply_event(res.pool, cmd, s.plan_catalog, s.signup_credits)


async def report(res: Resources) -> metering.ReportResult:
    """Report pending AI usage once (skipped when metering is off or another process is reporting)."""
    client = res.component(REPORTER)
    if client is None:
        return metering.ReportResult(skipped=True)
    return await metering.report_pending(res.pool, client, res.settings.meter_batch_size)


@handlers.on(REPORT_USAGE_ACTOR)
async def report_usage(res: Resources, cmd: ReportUsage) -> Outcome:
    result = await report(res)
    log.info("metering.run", sent=result.sent, failed=result.failed, skipped=result.skipped)
    # Usage a run could not send stays pending for the next one; a skipped run (not configured) did nothing.
    return Outcome(True, "rejected") if result.skipped else Outcome(True, "applied")


class MeterTicker(dramatiq.Middleware):
    """Reports AI usage every interval in worker processes that consume the billing queue."""

    def __init__(self, holder: ResourceHolder) -> None:
        self._holder = holder
        self._future: Future | None = None

    def after_worker_boot(self, broker, worker) -> None:
        queues = worker.consumer_whitelist
        if queues and BILLING_QUEUE not in queues:
            return
        loop_thread = get_event_loop_thread()
        if loop_thread is not None:
            self._future = asyncio.run_coroutine_threadsafe(self._loop(), loop_thread.loop)

    def before_worker_shutdown(self, broker, worker) -> None:
        if self._future is not None:
            self._future.cancel()
            self._future = None

    async def _settings(self) -> Settings:
        while True:
            try:
                return (await self._holder.get()).settings
            except Exception:  # a database blip at boot must not stop metering for good
                log.exception("metering.run_failed")
                await asyncio.sleep(1.0)

    async def _loop(self) -> None:
        settings = await self._settings()
        if not metering.enabled(settings):
            log.info("metering.disabled", reason="STRIPE_SECRET_KEY or STRIPE_METER_EVENT_NAME is empty")
            return
        log.info("metering.started", interval_s=settings.meter_report_interval_s)
        while True:
            await asyncio.sleep(settings.meter_report_interval_s)
            try:
                await report(await self._holder.get())
            except Exception:
                log.exception("metering.run_failed")
