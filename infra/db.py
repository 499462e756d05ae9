"""PostgreSQL: the database itself, its migrations and connection pools (asyncpg)."""

from __future__ import annotations

import json
from importlib import resources
from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

log = structlog.get_logger(__name__)

# A connection queries run on: one of its own (asyncpg.connect) or one acquired from a pool. asyncpg
# counts the pool's proxy as a Connection (isinstance), its type stubs keep the two apart.
Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy
# What a lone query runs on: a connection, or the pool itself (which acquires one for the query).
ConnOrPool: TypeAlias = Conn | asyncpg.Pool

_MIGRATION_LOCK = 0x6B_6565_7065_72  # any constant shared by every process of the deployment


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


async def ensure_database(url: str) -> None:
    """Create the target database if it does not exist, so a fresh server just works."""
    name = database_name(url)
    conn = await asyncpg.connect(_with_database(url, "postgres"))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
                log.info("database.created", database=name)
            except asyncpg.DuplicateDatabaseError:
                pass  # another process created it first
    finally:
        await conn.close()


def _migrations() -> list[tuple[str, str]]:
    folder = resources.files("infra") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


async def migrate(url: str) -> list[str]:
    """Apply pending migrations once, under an advisory lock; returns the versions applied."""
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in _migrations():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied.append(version)
                log.info("migration.applied", version=version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Roll back a transaction left open; nothing else, and no round trip when there is none.

    asyncpg's default reset runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``
    on every release, one more round trip per acquire. Pooled connections here never hold session
    state (what needs a session lock, a LISTEN or a SET opens its own connection), so there is
    nothing to undo but an unfinished transaction.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, reset=_reset_connection
    )


async def ping(pool: asyncpg.Pool) -> None:
    """A round trip to the database (the health check's probe)."""
    await pool.fetchval("SELECT 1")
