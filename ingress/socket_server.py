"""A python-socketio server that tells handlers whether the client asked for an ack."""

from __future__ import annotations

from contextvars import ContextVar

import socketio

ack_requested: ContextVar[bool] = ContextVar("ack_requested", default=False)


class AckAwareServer(socketio.AsyncServer):
    """Original-system clients often emit without an ack callback; errors must still reach them.

    Handlers read :data:`ack_requested` to choose between answering in the ack
    or with an ``error`` event.
    """

    async def _handle_event_internal(self, server, sid, eio_sid, data, namespace, id):
        ack_requested.set(id is not None)
        return await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
