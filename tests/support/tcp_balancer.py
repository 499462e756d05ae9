"""A loopback TCP load balancer for tests: each connection goes to the first backend that accepts it.

Like a balancer that has taken a draining node out of rotation, it never sends a connection to a
node whose listening socket is closed; it knows nothing of HTTP or Socket.IO and pipes bytes both
ways until either side closes. Start it on the running event loop::

    async with TcpBalancer([port_a, port_b]) as lb:
        url = lb.url            # http://127.0.0.1:<lb.port>
        lb.open_to(port_a)      # connections piped to port_a right now
        lb.pause()              # a network that stalls: connections stay up, no byte passes either way
        lb.resume()             # what was held back is passed on, in order
        await lb.sever()        # every piped connection is closed (bytes held back are lost)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter


class TcpBalancer:
    def __init__(self, backends: list[int], host: str = "127.0.0.1") -> None:
        self.backends = list(backends)
        self.host = host
        self.port = 0
        self.accepted: Counter[int] = Counter()  # backend port -> connections ever piped to it
        self.refused: Counter[int] = Counter()  # backend port -> connection attempts it refused
        self._open: Counter[int] = Counter()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def open_to(self, backend: int) -> int:
        return self._open[backend]

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def sever(self) -> None:
        """Close every connection piped so far; new ones are still accepted."""
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def start(self) -> TcpBalancer:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.sever()

    async def __aenter__(self) -> TcpBalancer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        for backend in self.backends:
            try:
                backend_r, backend_w = await asyncio.open_connection(self.host, backend)
            except OSError:
                self.refused[backend] += 1
                continue
            self.accepted[backend] += 1
            self._open[backend] += 1
            task = asyncio.current_task()
            assert task is not None
            self._pipes.add(task)
            try:
                await asyncio.gather(
                    _pipe(client_r, backend_w, self._flowing), _pipe(backend_r, client_w, self._flowing)
                )
            finally:
                self._open[backend] -= 1
                self._pipes.discard(task)
                _close(backend_w)
                _close(client_w)
            return
        _close(client_w)  # no backend accepts: the client sees the connection closed


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
    try:
        while data := await reader.read(65536):
            await flowing.wait()  # paused: what was read is held back, and nothing more is read
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: pass the FIN on, the other direction may still flow
    except (ConnectionError, OSError):
        _close(writer)


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
