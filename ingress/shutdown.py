"""Graceful shutdown of an ingress node on SIGTERM or SIGINT, all within ``SHUTDOWN_TIMEOUT_S``:

1. ``/health`` answers 503 ``{"status": "draining"}`` so a load balancer stops routing clients here;
   every response while draining closes its keep-alive connection, and a new Engine.IO handshake
   is refused with 503 so a client that reconnects right away is sent to another node.
2. The Socket.IO events in flight finish: a ``sendMessage`` already being published gets its ack.
3. Every client is sent ``serverShutdown {reconnect: true}``, then its transport is closed. Never a
   Socket.IO ``disconnect`` packet: socket.io-client does not reconnect after one ("io server
   disconnect"), while a closed transport ("transport close") makes it reconnect on its own,
   through the load balancer, to another node. The ``disconnect`` handlers clear presence. The
   node still listens meanwhile, so that a long-polling client between two polls can fetch its
   notice with its next poll.
4. The listening sockets close: no new connection reaches this node.
5. The HTTP requests still running finish, then the cleanup contexts close presence, AMQP, Redis
   and PostgreSQL, and the process exits 0.

Past the deadline the process exits with status 1 anyway (logged); a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import socketio
import structlog
from aiohttp import web

from ingress.http.errors import Unavailable, error_response

log = structlog.get_logger(__name__)

SHUTDOWN_NOTICE = "serverShutdown"
EXIT_TIMED_OUT = 1
# Shares of SHUTDOWN_TIMEOUT_S: waiting for the events in flight, then for the HTTP requests left.
EVENTS_SHARE = 0.4
REQUESTS_SHARE = 0.3
# A long-polling client between two polls has no request to answer: the notice waits in its queue
# this long for the next poll, after which Engine.IO would refuse that poll (the session closed).
POLL_GRACE_S = 1.0


class InFlight:
    """Counts the socket event handlers running (their ack included), so a drain can wait for them."""

    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        return self._running

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        self._running += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once nothing runs; False if something still did after ``timeout_s``."""
        try:
            async with asyncio.timeout(max(timeout_s, 0.0)):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False


@dataclass(slots=True)
class Drain:
    """What a drain acts on; ``draining`` is read by ``/health`` and :func:`drain_middleware`."""

    sio: socketio.AsyncServer
    in_flight: InFlight
    draining: bool = False


DRAIN = web.AppKey("drain", Drain)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_engineio_handshake(request: web.Request) -> bool:
    return request.path.startswith("/socket.io") and "sid" not in request.query


@web.middleware
async def drain_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    drain = request.app.get(DRAIN)
    if drain is None or not drain.draining:
        return await handler(request)
    if _is_engineio_handshake(request):
        # An HTTP error makes socket.io-client retry (a Socket.IO connect refusal would not).
        response: web.StreamResponse = error_response(
            Unavailable("this node is shutting down; connect again", code="draining")
        )
    else:
        response = await handler(request)
    response.force_close()  # the next request opens a new connection, which the balancer sends elsewhere
    return response


async def _close_transport(sio: socketio.AsyncServer, eio_sid: str, eio_socket: Any) -> None:
    sid = sio.manager.sid_from_eio_sid(eio_sid, "/")
    if sid is not None:
        await sio.emit(SHUTDOWN_NOTICE, {"reconnect": True}, to=sid, ignore_queue=True)
        if not eio_socket.upgraded:
            await _polled(eio_socket, POLL_GRACE_S)
    # On a WebSocket, no Engine.IO CLOSE packet: socket.io-client ignores it there and python-socketio
    # would not reconnect after it; closing the WebSocket itself makes both reconnect. On long-polling
    # the CLOSE packet answers the pending GET, which socket.io-client takes as "transport close".
    # close() runs the Socket.IO disconnect handlers (presence, calls) before returning.
    await eio_socket.close(wait=False, abort=eio_socket.upgraded, reason=sio.eio.reason.SERVER_DISCONNECT)
    await eio_socket.queue.put(None)  # the writer sends what is queued (acks, notice), then closes
    sio.eio.sockets.pop(eio_sid, None)


async def _polled(eio_socket: Any, within_s: float) -> None:
    """Wait until a long-polling client has fetched what is queued for it (or ``within_s``);
    Engine.IO's poll marks each packet it hands out done."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            await eio_socket.queue.join()


async def close_transports(sio: socketio.AsyncServer) -> int:
    """Close the transport of every client of this node; returns how many there were."""
    sockets = list(sio.eio.sockets.items())
    results = await asyncio.gather(*(_close_transport(sio, e, s) for e, s in sockets), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            log.warning("ingress.close_transport_failed", error=repr(result))
    return len(sockets)


async def drain_node(runner: web.AppRunner, drain: Drain, timeout_s: float) -> None:
    """Steps 1-4 of the module's sequence; the caller then cleans the runner up (step 5)."""
    sio, in_flight = drain.sio, drain.in_flight
    drain.draining = True
    log.info("ingress.draining", events_in_flight=in_flight.running)
    if not await in_flight.wait_idle(timeout_s * EVENTS_SHARE):
        log.warning("ingress.events_still_in_flight", events_in_flight=in_flight.running)
    # Still listening: a long-polling client between two polls fetches its notice with its next poll,
    # which comes on a new connection (draining responses close theirs); new handshakes get 503.
    clients = await close_transports(sio)
    for site in list(runner.sites):
        await site.stop()
    # Events that arrived meanwhile: their publish completes, though the ack may not reach the client,
    # which resends with the same clientMessageId (idempotent) on the node it reconnects to.
    await in_flight.wait_idle(timeout_s * EVENTS_SHARE)
    log.info("ingress.clients_moved", clients=clients)


async def serve(app: web.Application, host: str, port: int, timeout_s: float) -> int:
    """Serve until SIGTERM or SIGINT, then drain; returns the exit status."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=timeout_s * REQUESTS_SHARE)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            log.warning("ingress.shutdown_forced", signal=signum.name)
            os._exit(EXIT_TIMED_OUT)
        log.info("ingress.shutdown_requested", signal=signum.name, timeout_s=timeout_s)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop.wait()

    started = time.monotonic()
    _exit_if_stuck(timeout_s + 1.0)  # a backstop for a blocked event loop
    try:
        async with asyncio.timeout(timeout_s):
            await drain_node(runner, app[DRAIN], timeout_s)
            await runner.cleanup()
    except TimeoutError:
        log.error("ingress.shutdown_timed_out", timeout_s=timeout_s)
        return EXIT_TIMED_OUT
    log.info("ingress.stopped", seconds=round(time.monotonic() - started, 3))
    return 0


def _exit_if_stuck(after_s: float) -> None:
    def stuck() -> None:
        log.error("ingress.shutdown_stuck", after_s=after_s)
        os._exit(EXIT_TIMED_OUT)

    timer = threading.Timer(after_s, stuck)
    timer.daemon = True
    timer.start()
