"""``python -m scripts.event_log prune`` as an operator runs it, against the test database.

Rows are logged through ``infra.event_log`` and then aged by setting ``last_seen_at``. Only this
module writes rows older than an hour, and each test starts by clearing those, so the counts the
script prints are this test's own.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from infra import event_log
from infra.event_log import entry_for
from tests.support.processes import ROOT


@pytest.fixture(autouse=True)
async def no_old_rows(pool: asyncpg.Pool) -> AsyncIterator[None]:
    await pool.execute("DELETE FROM event_log WHERE last_seen_at < now() - interval '1 hour'")
    yield


def prune(stack_env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.event_log", "prune", *args],
        cwd=ROOT,
        env=stack_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def logged(pool: asyncpg.Pool, age: timedelta, status: event_log.Status = "applied") -> str:
    """A logged command last seen ``age`` ago; returns its command id."""
    command = {"type": "chat.send_message", "command_id": f"prune:{uuid.uuid4()}", "user_id": "prune-user"}
    entry = entry_for("chat", "chat_send_message", command, status)
    assert entry is not None
    await event_log.record(pool, entry)
    await pool.execute(
        "UPDATE event_log SET first_seen_at = now() - $2::interval, last_seen_at = now() - $2::interval"
        " WHERE command_id = $1",
        entry.command_id,
        age,
    )
    return entry.command_id


async def present(pool: asyncpg.Pool, ids: list[str]) -> set[str]:
    rows = await pool.fetch("SELECT command_id FROM event_log WHERE command_id = ANY($1::text[])", ids)
    return {r["command_id"] for r in rows}


async def test_dry_run_deletes_nothing_then_prune_deletes_exactly_the_old_rows_in_batches(pool, stack_env):
    old = [await logged(pool, timedelta(days=40)) for _ in range(5)]
    middle = [await logged(pool, timedelta(days=10)) for _ in range(2)]
    recent = [await logged(pool, timedelta(0)) for _ in range(2)]
    everything = [*old, *middle, *recent]
    await pool.execute(
        "INSERT INTO inbox (command_id, kind, status) SELECT unnest($1::text[]), 'chat.send_message', 'applied'",
        old,
    )

    dry = prune(stack_env, "--before", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete 5 event-log row(s)" in dry.stdout
    assert await present(pool, everything) == set(everything)

    done = prune(stack_env, "--before", "30d", "--batch", "2", "--yes")
    assert done.returncode == 0, done.stderr
    assert "deleted 5 event-log row(s)" in done.stdout and "in 3 batch(es)" in done.stdout
    assert await present(pool, everything) == {*middle, *recent}
    # The inbox, the idempotency record, is untouched.
    assert await pool.fetchval("SELECT count(*) FROM inbox WHERE command_id = ANY($1::text[])", old) == 5

    cutoff = (datetime.now(UTC) - timedelta(days=5)).replace(tzinfo=None).isoformat()  # no offset: UTC
    done = prune(stack_env, "--before", cutoff, "--yes")
    assert done.returncode == 0, done.stderr
    assert "deleted 2 event-log row(s)" in done.stdout
    assert await present(pool, everything) == set(recent)


async def test_status_filter_deletes_only_those_statuses(pool, stack_env):
    by_status = {s: await logged(pool, timedelta(days=3), s) for s in event_log.STATUSES}
    done = prune(stack_env, "--before", "2d", "--status", "applied,duplicate", "--yes")
    assert done.returncode == 0, done.stderr
    assert "deleted 2 event-log row(s)" in done.stdout
    assert await present(pool, list(by_status.values())) == {by_status["rejected"], by_status["failed"]}

    bad = prune(stack_env, "--before", "2d", "--status", "applied,lost", "--yes")
    assert bad.returncode == 2 and "statuses" in bad.stderr


async def test_a_cutoff_less_than_a_day_ago_is_refused_without_force(pool, stack_env):
    two_hours = await logged(pool, timedelta(hours=2))
    cutoff = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for args in (("--before", cutoff, "--yes"), ("--before", "0d", "--dry-run")):
        refused = prune(stack_env, *args)
        assert refused.returncode == 2 and "--force" in refused.stderr, refused.stderr
    assert await present(pool, [two_hours]) == {two_hours}

    forced = prune(stack_env, "--before", cutoff, "--force", "--yes")
    assert forced.returncode == 0, forced.stderr
    assert await present(pool, [two_hours]) == set()


async def test_without_yes_it_asks_and_a_no_deletes_nothing(pool, stack_env):
    ids = [await logged(pool, timedelta(days=8)) for _ in range(3)]
    refused = prune(stack_env, "--before", "7d", stdin="n\n")
    assert refused.returncode == 1
    assert "3 event-log row(s)" in refused.stderr and "aborted: nothing deleted" in refused.stderr
    assert await present(pool, ids) == set(ids)

    confirmed = prune(stack_env, "--before", "7d", stdin="yes\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert "deleted 3 event-log row(s)" in confirmed.stdout
    assert await present(pool, ids) == set()
