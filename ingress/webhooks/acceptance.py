"""Accepting a webhook's commands: publish each once, and remember it only after RabbitMQ confirmed it.

Ingress stays thin: no database on this path. An event is acknowledged with a 2xx only once
RabbitMQ confirmed a persistent copy of its command; otherwise the answer is 503 and the
provider retries. Each accepted command_id is remembered in Redis (``<prefix>:webhook:<id>``),
written only after the confirm, so a provider's redelivery is answered without publishing
again, and a delivery that failed is never mistaken for one that succeeded. Two concurrent
copies of one event may both be published; the worker's inbox dedupes those.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from redis.exceptions import RedisError

from infra.publisher import PublishFailed
from ingress.correlation import bind_command
from ingress.state import IngressState
from schemas.base import Command

log = structlog.get_logger(__name__)

REDIS_TIMEOUT_S = 0.5  # dedupe is an optimisation: a slow Redis must not hold the provider

Routed = tuple[str, str, Command]  # (queue, actor, command)


@dataclass(frozen=True, slots=True)
class Outcome:
    published: int
    duplicates: int


async def _already_accepted(state: IngressState, keys: list[str]) -> list[bool]:
    """Which command ids were accepted before. If Redis cannot say, treat all as new: the worker's
    inbox dedupes whatever we publish twice, while a lost event could never be recovered."""
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            values = await state.redis.mget(keys)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("webhook.dedupe_unavailable", error=repr(exc), commands=len(keys))
        return [False] * len(keys)
    return [value is not None for value in values]


async def _publish_and_mark(state: IngressState, queue: str, actor: str, command: Command, key: str) -> None:
    bind_command(command)  # this runs as a task of its own (gather): the binding ends with it
    await state.publisher.publish(queue, actor, command)
    # Confirmed: only now may a redelivery of this event be answered without publishing.
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            await state.redis.set(key, "1", ex=state.settings.webhook_dedupe_ttl_s)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("webhook.dedupe_mark_failed", command_id=command.command_id, error=repr(exc))


async def accept_routed(state: IngressState, routed: list[Routed]) -> Outcome:
    """Publish every (queue, actor, command) not accepted before; raise PublishFailed unless all
    were confirmed.

    The publishes run concurrently and all finish (confirmed or failed) before this returns, so
    the ones that were confirmed are marked and a retry of the whole delivery skips them.
    """
    unique: dict[str, Routed] = {}
    for queue, actor, command in routed:
        unique.setdefault(command.command_id, (queue, actor, command))
    in_delivery_duplicates = len(routed) - len(unique)
    if not unique:
        return Outcome(0, in_delivery_duplicates)
    keys = [state.settings.key("webhook", command_id) for command_id in unique]
    seen = await _already_accepted(state, keys)
    fresh = [(item, key) for item, key, was_seen in zip(unique.values(), keys, seen, strict=True) if not was_seen]
    for command_id, was_seen in zip(unique, seen, strict=True):
        if was_seen:
            log.info("webhook.duplicate", command_id=command_id)  # a provider's redelivery, answered as before
    results = await asyncio.gather(
        *(_publish_and_mark(state, *item, key) for item, key in fresh), return_exceptions=True
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    for error in failed:
        if not isinstance(error, PublishFailed):
            raise error
    if failed:
        raise PublishFailed(f"{len(failed)} of {len(fresh)} commands not confirmed")
    return Outcome(len(fresh), in_delivery_duplicates + len(unique) - len(fresh))
