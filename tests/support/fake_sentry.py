"""A local Sentry ingest endpoint: accepts what sentry-sdk sends and keeps the events.

sentry-sdk posts envelopes to ``/api/<project>/envelope/`` (gzip-compressed when it can): a
header line, then for each item an item-header line and its payload. Only ``event`` items are
kept, decoded; everything else (sessions, client reports) is acknowledged and dropped.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

from aiohttp import web

from tests.support.processes import free_port

PUBLIC_KEY = "0123456789abcdef0123456789abcdef"


class FakeSentry:
    def __init__(self, project_id: int = 1) -> None:
        self.project_id = project_id
        self.port = free_port()
        self.events: list[dict[str, Any]] = []
        self.raw_bodies: list[bytes] = []  # decompressed, to search for anything unscrubbed
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def dsn(self) -> str:
        return f"http://{PUBLIC_KEY}@127.0.0.1:{self.port}/{self.project_id}"

    async def start(self) -> FakeSentry:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/api/{project}/envelope/", self._envelope)
        app.router.add_post("/api/{project}/store/", self._store)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for_event(self, timeout: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while not self.events:
                self._arrived.clear()
                await self._arrived.wait()
        return self.events[0]

    async def _body(self, request: web.Request) -> bytes:
        body = await request.read()  # aiohttp undoes Content-Encoding itself
        if body[:2] == b"\x1f\x8b":  # ...unless it was left compressed
            body = gzip.decompress(body)
        self.raw_bodies.append(body)
        return body

    async def _envelope(self, request: web.Request) -> web.Response:
        for item, payload in _items(await self._body(request)):
            if item.get("type") == "event":
                self.events.append(json.loads(payload))
                self._arrived.set()
        return web.json_response({"id": "0" * 32})

    async def _store(self, request: web.Request) -> web.Response:
        self.events.append(json.loads(await self._body(request)))
        self._arrived.set()
        return web.json_response({"id": "0" * 32})


def _line(buf: bytes, pos: int) -> tuple[bytes, int]:
    end = buf.find(b"\n", pos)
    return (buf[pos:], len(buf)) if end < 0 else (buf[pos:end], end + 1)


def _items(buf: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The (item header, payload) pairs of an envelope; a payload with a ``length`` may hold newlines."""
    _, pos = _line(buf, 0)  # the envelope header
    items = []
    while pos < len(buf):
        header, pos = _line(buf, pos)
        if not header.strip():
            continue
        item = json.loads(header)
        if (length := item.get("length")) is not None:
            payload, pos = buf[pos : pos + length], pos + length + 1
        else:
            payload, pos = _line(buf, pos)
        items.append((item, payload))
    return items
