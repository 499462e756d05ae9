"""Engine.IO sessions that have not connected yet: capped per client IP and closed after a timeout.

An Engine.IO session costs a socket, a queue and ping tasks before the client has shown any
token; Socket.IO's ``40`` connect (with a valid token) is what makes it a user's connection.
Until then it is pending: at most ``max_per_ip`` pending per IP on this node, and closed by
the server ``timeout_s`` after it opened unless it connected meanwhile.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class SessionGuard:
    def __init__(
        self,
        timeout_s: float,
        max_per_ip: int,
        ip_of: Callable[[Mapping[str, Any]], str],
        close: Callable[[str], Coroutine[Any, Any, None]],
    ) -> None:
        self._timeout = timeout_s
        self._max_per_ip = max_per_ip
        self._ip_of = ip_of
        self._close = close
        self._pending: dict[str, tuple[str, asyncio.TimerHandle]] = {}  # eio sid -> (ip, deadline)
        self._per_ip: Counter[str] = Counter()
        self._closing: set[asyncio.Task[None]] = set()

    def opened(self, eio_sid: str, environ: Mapping[str, Any]) -> bool:
        """Start the clock on a new session; False if its IP already has too many pending."""
        if eio_sid in self._pending:
            return True  # still pending (a refused connect, then "41"): its clock keeps running
        ip = self._ip_of(environ)
        if self._per_ip[ip] >= self._max_per_ip:
            log.info("socket.refused", reason="too_many_connections", scope="pending_ip")
            return False
        deadline = asyncio.get_running_loop().call_later(self._timeout, self._expired, eio_sid)
        self._pending[eio_sid] = (ip, deadline)
        self._per_ip[ip] += 1
        return True

    def connected(self, eio_sid: str) -> None:
        """The session completed a Socket.IO connect: no longer pending."""
        self._forget(eio_sid)

    def closed(self, eio_sid: str) -> None:
        self._forget(eio_sid)

    def pending(self) -> int:
        return len(self._pending)

    def _forget(self, eio_sid: str) -> None:
        held = self._pending.pop(eio_sid, None)
        if held is None:
            return
        ip, deadline = held
        deadline.cancel()
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]

    def _expired(self, eio_sid: str) -> None:
        if eio_sid not in self._pending:
            return
        self._forget(eio_sid)
        log.info("socket.unauthenticated_timeout", eio_sid=eio_sid, after_s=self._timeout)
        task = asyncio.get_running_loop().create_task(self._close(eio_sid))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
