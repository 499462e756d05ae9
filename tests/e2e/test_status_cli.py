"""``python -m scripts.status`` as an operator runs it, against a real chat worker pool.

The test has its own database, vhost and pool: chat is consumed by the pool (two poison commands
dead-letter for real), billing has no pool, so its commands wait. The figures come from the
management API, refreshed by RabbitMQ every 5 s, so they are polled with a deadline.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from infra import db
from infra.publisher import CommandPublisher
from schemas.queues import ALL_QUEUES, BILLING_QUEUE, CHAT_QUEUE, MARK_READ_ACTOR, SEND_TIP_ACTOR
from tests.support import isolation
from tests.support.dead_letters import invalid_mark_read
from tests.support.processes import ROOT, Processes, free_port

DEADLINE_S = 60


@dataclass
class StatusStack:
    iso: isolation.Isolation

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scripts.status", *args],
            cwd=ROOT,
            env=self.iso.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def rows(self, **env: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        done = self.cli("--json", **env)
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        return document, {row["queue"]: row for row in document["rows"]}

    def wait_rows(self, expected: dict[str, dict[str, int]], **env: str) -> tuple[dict, dict]:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            document, rows = self.rows(**env)
            seen = {q: {k: rows[q][k] for k in want} for q, want in expected.items()}
            if seen == expected:
                return document, rows
            assert time.monotonic() < deadline, f"status never showed {expected}; last: {seen}"
            time.sleep(0.5)


@pytest.fixture(scope="module")  # read-only tests: one pool and one set of messages
async def status_stack() -> AsyncIterator[StatusStack]:
    run = isolation.new_isolation()
    isolation.create_vhost(run.vhost)
    procs = Processes(run.env())
    try:
        await db.migrate(run.database_url)
        procs.workers("chat", processes=1, threads=2)
        publisher = CommandPublisher(run.amqp_url, (CHAT_QUEUE, BILLING_QUEUE), timeout_s=10)
        await publisher.start()
        try:
            for _ in range(2):  # fail validation: dead-lettered at once, without retries
                await publisher.publish_payload(CHAT_QUEUE, MARK_READ_ACTOR, invalid_mark_read("status-user"))
            for i in range(3):  # no billing pool runs: these wait
                await publisher.publish_payload(BILLING_QUEUE, SEND_TIP_ACTOR, {"command_id": f"tip-{i}", "type": "x"})
        finally:
            await publisher.close()
        yield StatusStack(run)
    finally:
        procs.stop_all()
        isolation.delete_vhost(run.vhost)
        await isolation.drop_database(run.database)


EXPECTED = {
    CHAT_QUEUE: {"ready": 0, "unacked": 0, "dead": 2, "consumers": 1},
    BILLING_QUEUE: {"ready": 3, "unacked": 0, "dead": 0, "consumers": 0},
}


async def test_json_and_table_show_every_queue_from_the_management_api(status_stack: StatusStack):
    document, rows = status_stack.wait_rows(EXPECTED)
    assert document["source"] == "management" and document["vhost"] == status_stack.iso.vhost
    assert document["collected_at"] and document["rate_window_s"] == 60
    assert list(rows) == list(ALL_QUEUES)
    assert rows[BILLING_QUEUE]["oldest_age_s"] is not None and rows[CHAT_QUEUE]["oldest_age_s"] is None
    # The pool's publisher (for follow-up commands) declared every queue; nothing else is in them.
    others = {q: row for q, row in rows.items() if q not in EXPECTED}
    assert {q: (row["ready"], row["consumers"]) for q, row in others.items()} == {q: (0, 0) for q in others}
    assert {row["state"] for row in others.values()} <= {"running", "idle", "flow"}

    done = status_stack.cli()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for queue in ALL_QUEUES:
        assert any(line.split("│")[1:2] == [f" {queue:<8} "] for line in lines), f"{queue} missing:\n{done.stdout}"
    billing = next(line for line in lines if f" {BILLING_QUEUE} " in line)
    assert [cell.strip() for cell in billing.split("│")[3:8]] == ["3", "0", "0", "0", "0"]
    assert "source: management API http://127.0.0.1:15672" in done.stdout
    assert "guest" not in done.stdout  # credentials never printed


async def test_rabbitmqctl_fallback_when_the_management_api_is_down(status_stack: StatusStack):
    closed = f"http://127.0.0.1:{free_port()}"
    document, rows = status_stack.wait_rows(EXPECTED, RABBITMQ_MANAGEMENT_URL=closed)
    assert document["source"] == "rabbitmqctl" and closed in document["fallback_reason"]
    assert rows[BILLING_QUEUE]["in_rate"] is None and rows[BILLING_QUEUE]["oldest_age_s"] is not None
    done = status_stack.cli(RABBITMQ_MANAGEMENT_URL=closed)
    assert done.returncode == 0, done.stderr
    assert "source: rabbitmqctl, no rates" in done.stdout


def test_watch_refreshes_until_interrupted(status_stack: StatusStack):
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.status", "--watch", "0.5", "--json"],
        cwd=ROOT,
        env=status_stack.iso.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        documents = [json.loads(proc.stdout.readline()) for _ in range(3)]
        assert [len(d["rows"]) for d in documents] == [len(ALL_QUEUES)] * 3
        assert len({d["collected_at"] for d in documents}) == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_errors_exit_non_zero_with_a_message(status_stack: StatusStack):
    missing = status_stack.cli(AMQP_URL="amqp://guest:guest@127.0.0.1:5672/gk_no_such_vhost")
    assert missing.returncode == 1 and "vhost 'gk_no_such_vhost' not found" in missing.stderr
    assert status_stack.cli("--watch", "0").returncode == 2


def test_watch_without_a_terminal_prints_one_table_per_refresh(status_stack: StatusStack):
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.status", "--watch", "0.5"],
        cwd=ROOT,
        env=status_stack.iso.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        titles = 0
        while titles < 3:
            line = proc.stdout.readline()
            assert line, f"status --watch ended early: {proc.stderr.read() if proc.stderr else ''}"
            titles += line.startswith(f"Gatekeeper queues · vhost {status_stack.iso.vhost}")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
