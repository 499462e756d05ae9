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


APP_STATE = web.AppKey("state", IngressState)
