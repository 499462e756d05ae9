"""A loopback TCP proxy in front of one service, to take that service away as an outage would.

The chaos run (``scripts.chaos``) points its processes at the proxy instead of the service. To
them, :meth:`FaultProxy.cut` is the service stopping: every connection breaks and new ones are
refused (the listening socket is closed); :meth:`FaultProxy.restore` is its return, on the same
port. The service itself, shared with the rest of the machine, is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target_port = target_port
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()  # both ends of every piped connection

    @property
    def up(self) -> bool:
        return self._server is not None

    async def start(self) -> FaultProxy:
        await self._listen()
        return self

    async def cut(self) -> None:
        """The service goes away: new connections are refused, and every open one is closed."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()  # a reset, as from a process that went away
        self._open.clear()
        await asyncio.sleep(0)

    async def restore(self) -> None:
        """The service is back, on the same port."""
        if self._server is None:
            await self._listen()

    async def close(self) -> None:
        await self.cut()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            service_r, service_w = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            _close(client_w)
            return
        if self._server is None:  # cut while this connection was being opened
            _close(service_w)
            _close(client_w)
            return
        self._open.update((client_w, service_w))
        try:
            await asyncio.gather(_pipe(client_r, service_w), _pipe(service_r, client_w))
        finally:
            self._open.difference_update((client_w, service_w))
            _close(service_w)
            _close(client_w)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):  # RuntimeError: uvloop, on a transport cut meanwhile
        _close(writer)


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
