"""The call meter handler of the ``billing`` queue, and the sweeper that ends calls whose heartbeats stopped
or one of whose parties dropped off (no socket on any live ingress node for ``CALL_DISCONNECT_GRACE_S``).

The sweeper runs inside every worker process that consumes ``billing``, on dramatiq's
event loop, every ``CALL_SWEEP_INTERVAL_S``: any number of billing workers may run it at
once, since ending a call takes its row lock and a fixed inbox id (``call-timeout:<id>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from dramatiq import Middleware
from dramatiq.asyncio import get_event_loop_thread

from infra import presence_store
from infra.settings import Settings
from schemas.calls import CallMeter, signaling_key
from schemas.queues import BILLING_QUEUE, CALL_METER_ACTOR
from workers import calls_service
from workers.effects import Outcome, carry_out
from workers.handlers import Handlers
from workers.resources import ResourceHolder, Resources

log = structlog.get_logger(__name__)

handlers = Handlers()


def terms(settings: Settings) -> calls_service.Terms:
    return calls_service.Terms(
        settings.call_price_per_minute, settings.platform_fee_pct, round(settings.call_minute_s * 1000)
    )


@handlers.on(CALL_METER_ACTOR)
async def call_meter(res: Resources, cmd: CallMeter) -> Outcome:
    s = res.settings
    outcome = await calls_service.meter(res.pool, cmd, terms(s), s.signup_credits)
    await forget_signaling(res, cmd.call_id, outcome)
    return outcome


async def forget_signaling(res: Resources, call_id: str, outcome: Outcome) -> None:
    """Once billing has ended a call (hang-up, no credits, timeout), nobody may signal on it any more."""
    if any(e["event"] == "callEnded" for e in outcome.emits):
        await res.redis.delete(signaling_key(res.settings.key_prefix, call_id))


async def _drop_times(res: Resources, users: set[str]) -> dict[str, int]:
    """When each offline user among ``users`` dropped off; users online now are left out.

    A user no node recorded leaving (their node crashed, or they never connected) counts from
    the first sweep that sees them offline. With no live ingress node at all nobody can be judged
    (Redis was flushed, or the whole tier is down): no one counts as dropped.
    """
    prefix = res.settings.key_prefix
    live = await presence_store.live_nodes(res.redis, prefix)
    if not live:
        return {}
    offline = users - await presence_store.online_users(res.redis, prefix, users, live)
    seen = await presence_store.last_seen_ms(res.redis, prefix, offline)
    if unseen := [u for u, at in seen.items() if at is None]:
        now_ms = int(time.time() * 1000)
        pipe = res.redis.pipeline(transaction=False)
        for user in unseen:
            pipe.set(presence_store.seen_key(prefix, user), now_ms, nx=True, ex=presence_store.SEEN_TTL_S)
        await pipe.execute()
        seen.update(await presence_store.last_seen_ms(res.redis, prefix, unseen))
    return {u: at if at is not None else int(time.time() * 1000) for u, at in seen.items()}


async def sweep_dropped(res: Resources) -> int:
    """End every call one of whose parties has been gone longer than the grace; returns how many ended."""
    s = res.settings
    calls = await calls_service.active_calls(res.pool)
    if not calls:
        return 0
    dropped = await _drop_times(res, {u for c in calls for u in (c.caller_id, c.callee_id)})
    if not dropped:
        return 0
    now_ms = int(time.time() * 1000)
    grace_ms = round(s.call_disconnect_grace_s * 1000)
    ended = 0
    for call in calls:
        gone = []
        if call.caller_id in dropped:  # the caller was there at their last heartbeat
            gone.append(max(dropped[call.caller_id], call.last_seen_ms))
        if call.callee_id in dropped:
            gone.append(max(dropped[call.callee_id], call.started_ms))
        if not gone or min(gone) + grace_ms > now_ms:
            continue
        outcome = await calls_service.end_dropped(res.pool, call.call_id, min(gone), s.signup_credits)
        if outcome is not None:
            await carry_out(res.emitter, res.publisher, outcome, res.pool)
            await forget_signaling(res, call.call_id, outcome)
            ended += outcome.fresh
            log.info("call.party_dropped", call_id=call.call_id, dropped_ms=min(gone), duplicate=not outcome.fresh)
    return ended


async def sweep_once(res: Resources) -> int:
    """End every call whose last heartbeat is older than the timeout, or whose party dropped off;
    returns how many ended."""
    ended = await sweep_dropped(res)
    s = res.settings
    timeout_ms = round(s.call_heartbeat_timeout_s * 1000)
    now_ms = int(time.time() * 1000)
    for call_id in await calls_service.stale_calls(res.pool, now_ms, timeout_ms):
        outcome = await calls_service.expire(res.pool, call_id, now_ms, timeout_ms, s.signup_credits)
        if outcome is not None:
            await carry_out(res.emitter, res.publisher, outcome, res.pool)
            await forget_signaling(res, call_id, outcome)
            ended += outcome.fresh
            log.info("call.timed_out", call_id=call_id, duplicate=not outcome.fresh)
    return ended


class CallSweeper(Middleware):
    """Starts the sweep loop on dramatiq's event loop in processes that consume ``billing``."""

    def __init__(self, holder: ResourceHolder) -> None:
        self._holder = holder
        self._future: Any = None

    def after_worker_boot(self, broker, worker) -> None:
        queues = getattr(worker, "consumer_whitelist", None)
        if queues and BILLING_QUEUE not in queues:
            return
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            return
        self._future = asyncio.run_coroutine_threadsafe(self._run(), loop_thread.loop)

    def before_worker_shutdown(self, broker, worker) -> None:
        if self._future is not None:
            self._future.cancel()
            with contextlib.suppress(Exception):
                self._future.result(timeout=5)

    async def _run(self) -> None:
        while True:
            try:
                res = await self._holder.get()
                await sweep_once(res)
                interval = res.settings.call_sweep_interval_s
            except asyncio.CancelledError:
                raise
            except Exception:  # a database blip must not stop the sweeper for good
                log.exception("call.sweep_failed")
                interval = 1.0
            await asyncio.sleep(interval)
