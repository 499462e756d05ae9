from infra import db


async def test_migrations_are_idempotent_and_concurrent_safe(iso, pool):
    import asyncio

    results = await asyncio.gather(*(db.migrate(iso.database_url) for _ in range(3)))
    assert results == [[], [], []]  # already applied by the session fixture
    versions = await pool.fetch("SELECT version FROM schema_migrations")
    assert [r["version"] for r in versions] == [version for version, _ in db._migrations()]


async def test_a_fresh_database_is_created_and_migrated(iso):
    import asyncpg

    from tests.support.isolation import drop_database

    name = f"{iso.database}_fresh"
    url = iso.database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        assert await db.migrate(url) == [version for version, _ in db._migrations()]
        conn = await asyncpg.connect(url)
        system = {r["account_id"] for r in await conn.fetch("SELECT account_id FROM accounts WHERE kind = 'system'")}
        assert {"system:revenue", "system:grants", "system:purchases"} <= system
        await conn.close()
    finally:
        await drop_database(name)
