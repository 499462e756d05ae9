"""Report the AI agent's token usage to Stripe Billing meter events.

Each ``ai_usage`` row (one model call) is one meter event: ``identifier`` is the call id and the
request's ``Idempotency-Key`` is derived from it, so sending a row again (after a failure, a
timeout, or a crash between Stripe's answer and our commit) records nothing twice at Stripe.
A row is marked ``meter_reported_at`` only after Stripe accepted it; until then every run sends
it again, with the same identifier.

Only calls made inside a metering window are reported: while a user had an active plan with a
Stripe customer (``meter_windows``, kept by workers.plans_service). A call made before a
cancellation is still reported after it; tenants' and Free users' calls never are.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
import asyncpg
import stripe
import structlog
from stripe import AIOHTTPClient, StripeClient
from stripe.params.billing import MeterEventCreateParams

from infra import usage_reports
from infra.settings import Settings
from infra.usage_reports import UsageRow

log = structlog.get_logger(__name__)

_REPORT_LOCK = usage_reports.REPORT_LOCK  # one reporter at a time across the deployment ("meters")


@dataclass(frozen=True, slots=True)
class ReportResult:
    sent: int = 0
    failed: int = 0
    skipped: bool = False  # another process holds the reporter lock


@dataclass(frozen=True, slots=True)
class MeterClient:
    """The real ``stripe`` client (async, over aiohttp) and the meter it reports to."""

    stripe: StripeClient  # the field's name hides the module in this class body
    http: AIOHTTPClient
    event_name: str

    async def close(self) -> None:
        await self.http.close_async()


def enabled(settings: Settings) -> bool:
    """Metering is on when both ``STRIPE_SECRET_KEY`` and ``STRIPE_METER_EVENT_NAME`` are set."""
    return bool(settings.stripe_secret_key.get_secret_value() and settings.stripe_meter_event_name)


def meter_client(settings: Settings) -> MeterClient | None:
    """A client for ``STRIPE_API_BASE``; None when metering is off (no ``STRIPE_SECRET_KEY`` or
    no ``STRIPE_METER_EVENT_NAME``). Make it on the event loop that will use it."""
    if not enabled(settings):
        return None
    key = settings.stripe_secret_key.get_secret_value()
    http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=settings.stripe_timeout_s))
    client = stripe.StripeClient(
        key,
        base_addresses={"api": settings.stripe_api_base.rstrip("/")},
        max_network_retries=0,  # a failed row is simply sent again on the next run
        http_client=http,
    )
    return MeterClient(client, http, settings.stripe_meter_event_name)


async def _send(client: MeterClient, row: UsageRow) -> bool:
    params: MeterEventCreateParams = {
        "event_name": client.event_name,
        "identifier": str(row.call_id),
        "timestamp": row.timestamp,
        "payload": {"stripe_customer_id": row.customer_id, "value": str(row.tokens)},
    }
    try:
        await client.stripe.v1.billing.meter_events.create_async(params, {"idempotency_key": f"meter-{row.call_id}"})
        return True
    except stripe.StripeError as exc:
        log.warning(
            "metering.send_failed",
            call_id=str(row.call_id),
            error=str(exc)[:300],
            http_status=getattr(exc, "http_status", None),
        )
        return False


async def report_batch(pool: asyncpg.Pool, client: MeterClient, batch_size: int) -> ReportResult:
    """Send one batch of unreported rows (concurrently) and mark those Stripe accepted."""
    rows = await usage_reports.pending(pool, batch_size)
    if not rows:
        return ReportResult()
    accepted = await asyncio.gather(*(_send(client, row) for row in rows))
    done = [row.call_id for row, ok in zip(rows, accepted, strict=True) if ok]
    if done:
        await usage_reports.mark_reported(pool, done)
    return ReportResult(sent=len(done), failed=len(rows) - len(done))


async def report_pending(
    pool: asyncpg.Pool, client: MeterClient, batch_size: int, max_batches: int = 50
) -> ReportResult:
    """Report batches until nothing is pending or a batch fails, holding the reporter lock."""
    async with pool.acquire() as conn:
        if not await usage_reports.try_lock_reporter(conn):
            return ReportResult(skipped=True)
        try:
            sent = failed = 0
            for _ in range(max_batches):
                result = await report_batch(pool, client, batch_size)
                sent, failed = sent + result.sent, failed + result.failed
                if result.failed or result.sent < batch_size:
                    break
            if sent or failed:
                log.info("metering.reported", sent=sent, failed=failed)
            return ReportResult(sent, failed)
        finally:
            await usage_reports.unlock_reporter(conn)
