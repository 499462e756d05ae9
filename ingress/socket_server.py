"""A python-socketio server that tells handlers whether the client asked for an ack, and closes
the connection of a client that sends a binary, malformed or over-deep packet."""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from typing import Any

import engineio
import socketio
import structlog
from engineio import json as engineio_json
from engineio import packet as engineio_packet
from socketio import packet

from infra.json_limits import BoundedJson, JsonLimitError, JsonLimits, check
from ingress.session_guard import SessionGuard
from ingress.shutdown import InFlight

log = structlog.get_logger(__name__)

ack_requested: ContextVar[bool] = ContextVar("ack_requested", default=False)
# Our protocol has no binary events; python-socketio would buffer a binary packet's announced
# attachments without bound, so the packet types are refused from their first character.
BINARY_PACKET_TYPES = frozenset({str(packet.BINARY_EVENT), str(packet.BINARY_ACK)})
# What python-socketio raises, before any handler runs, for a packet that does not decode or has
# no usable shape (``42``, ``42{}``, ``4x``...): the sender is disconnected, as socket.io's own
# server does on a parse error, instead of a traceback per hostile frame in the log.
MALFORMED_PACKET_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)
# A refused WebSocket is closed once its client has been quiet this long (at most LINGER_MAX_S
# after the refusal), its frames read and dropped meanwhile: closing a TCP connection with unread
# data sends a reset, which can make the client's kernel drop the ``error`` event unread. This is
# the lingering close HTTP servers do (nginx's lingering_timeout and lingering_time).
LINGER_QUIET_S = 0.25
LINGER_MAX_S = 5.0


class EngineIOServer(engineio.AsyncServer):
    """python-engineio's ``disconnect(sid)`` waits until the client has read the CLOSE packet, and
    it calls it from a long-polling POST that carries a packet Engine.IO refuses (``0``, ``2``,
    ``6`` from a client): a client that never polled again held that request and its session
    forever. Here the session is closed without waiting, as ingress.shutdown closes transports."""

    async def disconnect(self, sid: str | None = None) -> None:
        sock = self.sockets.get(sid) if sid is not None else None
        if sock is None:
            return await super().disconnect(sid)
        await sock.close(wait=False, reason=self.reason.SERVER_DISCONNECT)
        sock.queue.put_nowait(None)  # ends a WebSocket's writer, which closes the connection
        self.sockets.pop(sid, None)


class AckAwareServer(socketio.AsyncServer):
    """Original-system clients often emit without an ack callback; errors must still reach them.

    Handlers read :data:`ack_requested` to choose between answering in the ack
    or with an ``error`` event. ``in_flight`` counts the events being handled, up to their ack
    being queued, so a graceful shutdown can let them finish (``ingress/shutdown.py``).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = InFlight()
        self._lingering: dict[str, float] = {}  # refused WebSocket eio_sid -> when it last sent
        self._linger_tasks: set[asyncio.Task[None]] = set()

    # --- sessions that never connect (ingress/session_guard.py; ChatSockets sets ``guard``) ---
    guard: SessionGuard | None = None

    async def _handle_eio_connect(self, eio_sid, environ):
        if self.guard is not None and not self.guard.opened(eio_sid, environ):
            return "too_many_connections"  # Engine.IO answers the handshake 401
        return await super()._handle_eio_connect(eio_sid, environ)

    async def _handle_connect(self, eio_sid, namespace, data):
        await super()._handle_connect(eio_sid, namespace, data)
        if self.guard is not None and self.manager.sid_from_eio_sid(eio_sid, namespace or "/") is not None:
            self.guard.connected(eio_sid)

    async def _handle_disconnect(self, eio_sid, namespace, reason=None):
        await super()._handle_disconnect(eio_sid, namespace, reason)
        if self.guard is not None and eio_sid in self.environ:  # "41" on a session left open: pending again
            if not self.guard.opened(eio_sid, self.environ[eio_sid]):
                await self.close_session(eio_sid)

    async def _handle_eio_disconnect(self, eio_sid, reason):
        try:
            await super()._handle_eio_disconnect(eio_sid, reason)
        finally:
            if self.guard is not None:
                self.guard.closed(eio_sid)

    async def close_session(self, eio_sid: str) -> None:
        """Close an Engine.IO session now, without waiting for a client that may never read again."""
        sock = self.eio.sockets.get(eio_sid)
        if sock is None or sock.closed or sock.closing:
            return
        await sock.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)
        sock.queue.put_nowait(None)  # ends a websocket's writer, which closes the connection

    async def _handle_event_internal(self, server, sid, eio_sid, data, namespace, id):
        ack_requested.set(id is not None)
        with self.in_flight.track():
            return await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)

    # --- refused packets ----------------------------------------------------------------
    def _engineio_server_class(self) -> type[engineio.AsyncServer]:
        return EngineIOServer

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        """Close the sender's connection on a binary message or packet, on JSON over the limits
        (``serializer=bounded_packets(...)``, see ingress.app) and on a malformed packet; nothing
        else is affected. What a refused connection still sends is dropped unread."""
        if eio_sid in self._lingering:
            self._lingering[eio_sid] = time.monotonic()
            return
        eio_socket = self.eio.sockets.get(eio_sid)
        if eio_socket is None or eio_socket.closing:
            return
        reason = binary_refusal(data)
        if reason is None:
            try:
                return await super()._handle_eio_message(eio_sid, data)
            except JsonLimitError as exc:
                reason = str(exc)
            except MALFORMED_PACKET_ERRORS as exc:
                reason = f"malformed packet ({type(exc).__name__})"
        await self._refuse_connection(eio_sid, reason)

    async def _refuse_connection(self, eio_sid: str, reason: str) -> None:
        """An ``error`` event (if the socket is connected), then the transport closed."""
        eio_socket = self.eio.sockets.get(eio_sid)
        if eio_socket is None or eio_socket.closing:
            return
        sid = self.manager.sid_from_eio_sid(eio_sid, "/")
        log.warning("socket.packet_refused", sid=sid, reason=reason)
        if sid is not None and self.manager.is_connected(sid, "/"):
            error = {"code": "bad_request", "message": reason}
            await self._send_packet(eio_sid, self.packet_class(packet.EVENT, namespace="/", data=["error", error]))
        # As ingress.shutdown closes a transport: the WebSocket itself, so a client that ignores the
        # CLOSE packet cannot keep it open; on long-polling the CLOSE packet answers the pending GET.
        # close() runs the Socket.IO disconnect handlers; wait=False, as nobody may ever poll again.
        await eio_socket.close(wait=False, abort=eio_socket.upgraded, reason=self.eio.reason.SERVER_DISCONNECT)
        self.eio.sockets.pop(eio_sid, None)
        if eio_socket.upgraded:
            self._lingering[eio_sid] = time.monotonic()
            task = asyncio.create_task(self._close_when_quiet(eio_sid, eio_socket.queue))
            self._linger_tasks.add(task)
            task.add_done_callback(self._linger_tasks.discard)
        else:
            await eio_socket.queue.put(None)

    async def _close_when_quiet(self, eio_sid: str, queue: asyncio.Queue) -> None:
        """Close a refused WebSocket once its client stops sending (see LINGER_QUIET_S)."""
        deadline = time.monotonic() + LINGER_MAX_S
        try:
            while True:  # each frame received meanwhile moves the quiet deadline on
                wake = min(self._lingering[eio_sid] + LINGER_QUIET_S, deadline)
                if (delay := wake - time.monotonic()) <= 0:
                    break
                await asyncio.sleep(delay)
        finally:
            self._lingering.pop(eio_sid, None)
            queue.put_nowait(None)  # the writer sends the error event, then closes the WebSocket


def binary_refusal(data: Any) -> str | None:
    """Why an Engine.IO message is refused for being binary, or None."""
    if isinstance(data, bytes | bytearray):
        return "binary messages are not accepted"
    if isinstance(data, str) and data[:1] in BINARY_PACKET_TYPES:
        return "binary packets are not accepted"
    return None


def bounded_packets(limits: JsonLimits) -> type[packet.Packet]:
    """The Socket.IO packet class for ``AsyncServer(serializer=...)``: an incoming packet over
    ``limits`` raises :class:`JsonLimitError` before its JSON is parsed.

    Engine.IO parses the JSON of its own packets (``4[...``) with one class-wide json module;
    that one is bounded here too, by depth only, since it is shared with any Engine.IO client in
    the process. (The ``json=`` argument would also bound python-socketio's Redis manager, which
    relays what was already accepted, so it is not used.)
    """
    engineio_packet.Packet.json = BoundedJson(JsonLimits(limits.max_depth, None), base=engineio_json)

    class BoundedPacket(packet.Packet):
        def decode(self, encoded_packet: Any) -> int:
            if isinstance(encoded_packet, str):
                check(encoded_packet, limits)
            return super().decode(encoded_packet)

    return BoundedPacket
