"""Every Redis client Gatekeeper opens: plain commands, and Socket.IO's pub/sub manager.

redis-py looks its own version up in the installed package's metadata (``importlib.metadata``)
each time it opens a connection, about 20 ms of CPU. A worker that publishes results from
hundreds of coroutines at once opens a connection per concurrent publish, so that lookup alone
held an AI worker's event loop for seconds while it warmed up. Handing it the version it
already computed at import makes a new connection cheap.
"""

from __future__ import annotations

import redis
import socketio
from redis.asyncio import Redis

CLIENT_OPTIONS = {"lib_version": redis.__version__}


def redis_client(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True, **CLIENT_OPTIONS)


def socketio_manager(url: str, channel: str, *, write_only: bool = False) -> socketio.AsyncRedisManager:
    """The manager that carries emits between ingress nodes and from workers, over ``channel``."""
    return socketio.AsyncRedisManager(url, channel=channel, write_only=write_only, redis_options=dict(CLIENT_OPTIONS))
