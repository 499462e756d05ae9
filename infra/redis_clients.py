"""Every Redis client Gatekeeper opens: plain commands, and Socket.IO's pub/sub manager.

redis-py looks its own version up in the installed package's metadata (``importlib.metadata``)
each time it opens a connection, about 20 ms of CPU. A worker that publishes results from
hundreds of coroutines at once opens a connection per concurrent publish, so that lookup alone
held an AI worker's event loop for seconds while it warmed up. Handing it the version it
already computed at import makes a new connection cheap.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
import socketio
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from socketio.redis_manager import parse_redis_sentinel_url

CLIENT_OPTIONS = {"lib_version": redis.__version__}
SENTINEL_SCHEME = "redis+sentinel"
SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)


def check_redis_url(url: str) -> None:
    """Refuse at start-up what would only fail at the first command, e.g. a sentinel URL without its master's name."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ValueError(f"REDIS_URL: scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    if scheme == SENTINEL_SCHEME:
        sentinels, service, _ = parse_redis_sentinel_url(url)
        if not sentinels or not service:
            raise ValueError("REDIS_URL: redis+sentinel://host:port[,host:port...]/<db>/<master name>")


def redis_client(url: str) -> Redis:
    """A client of the Redis master: ``url`` itself, or the one Sentinel names for a redis+sentinel:// URL.

    Through Sentinel the client asks for the current master on each new connection, so after a
    failover it follows the promoted replica the way Socket.IO's manager (same URL) does.
    """
    if urlsplit(url).scheme == SENTINEL_SCHEME:
        sentinels, service, options = parse_redis_sentinel_url(url)
        sentinel = Sentinel(sentinels, decode_responses=True, **CLIENT_OPTIONS, **options)
        return sentinel.master_for(service)
    return Redis.from_url(url, decode_responses=True, **CLIENT_OPTIONS)


def socketio_manager(url: str, channel: str, *, write_only: bool = False) -> socketio.AsyncRedisManager:
    """The manager that carries emits between ingress nodes and from workers, over ``channel``."""
    return socketio.AsyncRedisManager(url, channel=channel, write_only=write_only, redis_options=dict(CLIENT_OPTIONS))
