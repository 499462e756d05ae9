"""A python-socketio server that tells handlers whether the client asked for an ack."""

from __future__ import annotations

from contextvars import ContextVar

import socketio

from ingress.shutdown import InFlight

ack_requested: ContextVar[bool] = ContextVar("ack_requested", default=False)


class AckAwareServer(socketio.AsyncServer):
    """Original-system clients often emit without an ack callback; errors must still reach them.

    Handlers read :data:`ack_requested` to choose between answering in the ack
    or with an ``error`` event. ``in_flight`` counts the events being handled, up to their ack
    being queued, so a graceful shutdown can let them finish (``ingress/shutdown.py``).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = InFlight()

    async def _handle_event_internal(self, server, sid, eio_sid, data, namespace, id):
        ack_requested.set(id is not None)
        with self.in_flight.track():
            return await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
