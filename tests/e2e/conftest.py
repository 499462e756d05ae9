"""The running system: two ingress nodes and a chat worker pool, as real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from tests.support import isolation
from tests.support.clients import ChatClient
from tests.support.fake_providers import FakeTwilio
from tests.support.isolation import ADMIN_TOKEN
from tests.support.processes import Proc, Processes


@dataclass
class Stack:
    processes: Processes
    nodes: list[Proc]
    workers: Proc

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def url(self, path: str, node: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[node]}{path}"


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str]) -> Iterator[Stack]:
    procs = Processes(
        {
            **stack_env,
            "RATE_LIMITS": "200/1s",
            "TWILIO_AUTH_TOKEN": isolation.TWILIO_AUTH_TOKEN,
            "META_APP_SECRET": isolation.META_APP_SECRET,
            "META_VERIFY_TOKEN": isolation.META_VERIFY_TOKEN,
            "PUBLIC_BASE_URL": isolation.PUBLIC_BASE_URL,
        }
    )
    try:
        nodes = [procs.ingress(), procs.ingress()]
        workers = procs.workers("chat", processes=2, threads=8)
        yield Stack(procs, nodes, workers)
    finally:
        procs.stop_all()


@pytest.fixture
async def fake_twilio():
    """A local Twilio REST API; Twilio signs webhooks with the same auth token the REST API checks."""
    fake = FakeTwilio(auth_token=isolation.TWILIO_AUTH_TOKEN)
    await fake.start()
    yield fake
    await fake.close()


def twilio_env(fake: FakeTwilio) -> dict[str, str]:
    """Settings that point a process's Twilio traffic at ``fake`` and its webhooks at the public URL."""
    return {
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": isolation.TWILIO_AUTH_TOKEN,
        "TWILIO_API_BASE_URL": fake.url,
        "PUBLIC_BASE_URL": isolation.PUBLIC_BASE_URL,
    }


@pytest.fixture(autouse=True)
def _ledger_invariants_after_each_test(ledger):
    """Every end-to-end test ends with the ledger invariants checked."""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"x-admin-token": ADMIN_TOKEN}


@pytest.fixture
async def clients() -> AsyncIterator[list[ChatClient]]:
    """Clients made by a test are disconnected when it ends."""
    made: list[ChatClient] = []
    yield made
    for client in made:
        if client.sio.connected:
            await client.close()


async def grant(http: aiohttp.ClientSession, stack: Stack, user_id: str, credits: int, key: str) -> dict:
    async with http.post(
        stack.url(f"/api/credits/grant/{user_id}"),
        json={"credits": credits, "reason": "test", "idempotencyKey": key},
        headers={"x-admin-token": ADMIN_TOKEN},
    ) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def stats(http: aiohttp.ClientSession, stack: Stack, user_id: str) -> dict:
    async with http.get(stack.url(f"/api/credits/stats/{user_id}"), headers={"x-admin-token": ADMIN_TOKEN}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()
