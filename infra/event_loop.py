"""The event loop every process of ours runs on: uvloop where it is installed, unless EVENT_LOOP=asyncio.

uvloop's transports and scheduling are implemented on libuv in C; it is a drop-in for asyncio's
loop (aiohttp, asyncpg, aio-pika and redis-py support it). Installed as the loop *policy*, so that
every loop made afterwards is one: ``asyncio.run`` in an ingress node, and the loop thread of
dramatiq's AsyncIO middleware in each worker process.
"""

from __future__ import annotations

import asyncio

import structlog

log = structlog.get_logger(__name__)


def install(kind: str) -> str:
    """Make ``kind`` (``uvloop`` or ``asyncio``) the loop of this process; returns the one in use."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:  # a platform without a wheel: the standard loop works the same, slower
            log.warning("event_loop.uvloop_missing")
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    return "asyncio"
