"""Per-process connections, opened lazily on dramatiq's asyncio event-loop thread.

Workers are forked by dramatiq's CLI, so nothing may connect at import time:
a connection made before the fork would be shared by every child.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
from redis.asyncio import Redis

from infra import db
from infra.publisher import CommandPublisher
from infra.redis_clients import BatchingRedisManager, redis_client, socketio_manager
from infra.settings import Settings
from infra.stats_counter import StatsCounter
from schemas.queues import WORK_QUEUES
from workers.middleware.correlation import detached

T = TypeVar("T")


class Component(Generic[T]):
    """A per-process object that only some handlers need (a model client, provider clients), made
    from the settings on first use on the event loop and closed with the other resources."""

    def __init__(self, name: str, make: Callable[[Settings], T], close: Callable[[T], Awaitable[None]]) -> None:
        self.name = name
        self.make = make
        self.close = close


@dataclass(slots=True)
class Resources:
    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    emitter: BatchingRedisManager
    publisher: CommandPublisher
    _components: dict[Component[Any], Any] = field(default_factory=dict)
    _counters: dict[str, StatsCounter] = field(default_factory=dict)

    def counter(self, name: str) -> StatsCounter:
        """The statistic ``stats:<name>``, counted in this process and added to Redis about once a second."""
        if name not in self._counters:
            self._counters[name] = StatsCounter(self.redis, self.settings.key("stats", name))
        return self._counters[name]

    def component(self, component: Component[T]) -> T:
        """This process's ``component``, made now if it is the first use."""
        if component not in self._components:
            self._components[component] = component.make(self.settings)
        return self._components[component]

    async def close_components(self) -> None:
        counters, self._counters = self._counters, {}
        for counter in counters.values():
            await counter.close()
        made, self._components = self._components, {}
        for component, value in made.items():
            await component.close(value)


class ResourceHolder:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._resources: Resources | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> Resources:
        if self._resources is not None:
            return self._resources
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._resources is None:
                s = self._settings
                pool = await db.create_pool(s.database_url, min_size=1, max_size=s.worker_db_pool_size)
                redis = redis_client(s.effective_redis_url, **s.redis_pool)
                emitter = socketio_manager(s.effective_redis_url, s.key("socketio"), write_only=True, **s.redis_pool)
                publisher = CommandPublisher(
                    s.amqp_url,
                    WORK_QUEUES,
                    s.publish_timeout_s,
                    connection_name="gatekeeper-worker",
                    queue_type=s.amqp_queue_type,
                )
                # Its connection's background tasks outlive this command: keep its id off their lines.
                await detached(publisher.start)
                self._resources = Resources(s, pool, redis, emitter, publisher)
        return self._resources

    async def close(self) -> None:
        if self._resources is None:
            return
        await self._resources.close_components()
        await self._resources.publisher.close()
        await self._resources.pool.close()
        await self._resources.redis.aclose()
        self._resources = None
