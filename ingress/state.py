"""Typed application state shared by the HTTP routes and the socket handlers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from infra.publisher import CommandPublisher
from infra.settings import Settings
from ingress.presence import Presence


@dataclass(slots=True)
class IngressState:
    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    publisher: CommandPublisher
    presence: Presence
    started: float = field(default_factory=time.monotonic)
    read_pool: asyncpg.Pool | None = None  # DATABASE_READ_URL's pool (a replica); None: reads use ``pool``

    @property
    def reads(self) -> asyncpg.Pool:
        """For reads that may lag behind the primary: history, stats, usage, analytics. Never for a write
        or for what decides one; those use ``pool``, the primary."""
        return self.read_pool if self.read_pool is not None else self.pool


APP_STATE = web.AppKey("state", IngressState)
