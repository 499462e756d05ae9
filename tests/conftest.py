"""Fixtures shared by every layer of tests.

Integration and end-to-end tests talk to the real PostgreSQL, RabbitMQ and
Redis, each run inside its own database, vhost and key prefix.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from infra import db
from tests.support import isolation
from tests.support.ledger_checks import assert_ledger_invariants


@pytest.fixture(scope="session")
def iso() -> Iterator[isolation.Isolation]:
    run = isolation.new_isolation()
    isolation.create_vhost(run.vhost)
    asyncio.run(db.migrate(run.database_url))
    try:
        yield run
    finally:
        if not os.environ.get("KEEP_TEST_DATA"):
            isolation.delete_vhost(run.vhost)
            asyncio.run(isolation.drop_database(run.database))
            isolation.delete_redis_keys(run.key_prefix)


@pytest.fixture(scope="session")
def stack_env(iso: isolation.Isolation) -> dict[str, str]:
    return iso.env()


@pytest.fixture(scope="session")
def settings(stack_env: dict[str, str]):
    from infra.settings import Settings

    return Settings(**{k.lower(): v for k, v in stack_env.items() if k.lower() in Settings.model_fields})


@pytest.fixture(scope="session")
async def pool(iso: isolation.Isolation) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(iso.database_url, max_size=20)
    yield p
    await p.close()


@pytest.fixture
async def ledger(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """The test database's pool; the ledger invariants are checked when the test ends.

    Integration and end-to-end tests use it automatically (see their conftest),
    so every test that can move money ends with the invariants checked.
    """
    yield pool
    async with pool.acquire() as conn:
        await assert_ledger_invariants(conn)
