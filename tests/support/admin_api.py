"""The admin HTTP API as tests call it: credits granted and read back, any other call by URL."""

from __future__ import annotations

from typing import Any, Protocol

import aiohttp

from tests.support.isolation import ADMIN_TOKEN


class NodeUrls(Protocol):
    """Anything with a node's URLs: a ``Stack``, a ``WebStack`` or a ``OneNode``."""

    def url(self, path: str, node: int = 0) -> str: ...


async def grant(http: aiohttp.ClientSession, stack: NodeUrls, user_id: str, credits: int, key: str) -> dict:
    async with http.post(
        stack.url(f"/api/credits/grant/{user_id}"),
        json={"credits": credits, "reason": "test", "idempotencyKey": key},
        headers={"x-admin-token": ADMIN_TOKEN},
    ) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def stats(http: aiohttp.ClientSession, stack: NodeUrls, user_id: str) -> dict:
    async with http.get(stack.url(f"/api/credits/stats/{user_id}"), headers={"x-admin-token": ADMIN_TOKEN}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def call(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: Any = None
) -> tuple[int, dict[str, Any]]:
    """GET ``url``, or POST ``body`` to it; the status and the JSON answer."""
    method = "GET" if body is None else "POST"
    async with http.request(method, url, headers=headers, json=body) as resp:
        return resp.status, await resp.json(content_type=None)
