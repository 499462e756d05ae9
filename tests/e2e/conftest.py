"""The running system: two ingress nodes and a chat worker pool, as real processes; the fake Twilio
and OpenAI servers and the AI agent's stack of its own. Helpers live in tests/support."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from tests.support import isolation
from tests.support.clients import ChatClient
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_providers import FakeTwilio
from tests.support.isolation import ADMIN_TOKEN
from tests.support.processes import Processes
from tests.support.stacks import Stack
from tests.support.twilio_webhooks import twilio_env


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


@pytest.fixture
async def fake_model() -> AsyncIterator[FakeOpenAI]:
    """A local OpenAI-compatible server that checks its API key (a module may override it)."""
    fake = FakeOpenAI(api_key="sk-test-" + uuid.uuid4().hex)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def ai_stack(iso, stack_env, fake_model, fake_twilio):
    """Ingress + chat, ai and outbound pools in a vhost of their own, talking to the fakes."""
    vhost = f"{iso.vhost}_ai"
    isolation.create_vhost(vhost)
    env = {
        **stack_env,
        "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
        "OPENAI_BASE_URL": fake_model.url,
        "OPENAI_API_KEY": fake_model.api_key,
        "AI_MODEL": "fake-model",
        "AI_MAX_ATTEMPTS": "3",
        "AI_TIMEOUT_S": "5",
        **twilio_env(fake_twilio),
    }
    procs = Processes(env)
    try:
        node = procs.ingress()
        procs.workers("chat", processes=1, threads=4)
        procs.workers("ai", processes=1, threads=16)
        procs.workers("outbound", processes=1, threads=4)
        yield node, env
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


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
