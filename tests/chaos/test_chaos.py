"""The chaos suite, short form (issue 15, point 6): ``python -m scripts.chaos --short`` under a
steady load from real Socket.IO clients, one fault at a time: ``kill -9`` of the chat pool and of
an ingress node, RabbitMQ taken away and back, PostgreSQL restarted (a server of the run's own,
stopped with ``-m fast`` and started, where one can run here), Redis clients killed, Redis
restarted. No accepted message may be missing at any member, none may reach a client twice, and
the ledger must be exact; the time targets (no send unanswered, recovery within 10 s) are reported
by the run and checked here only for the outages that must be answered with ``unavailable``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scripts import own_postgres
from scripts.chaos import FAULTS
from tests.support import isolation
from tests.support.processes import ROOT


@pytest.fixture(scope="module")
def report() -> dict:
    args = ["-m", "scripts.chaos", "--short", "--json", "--pg", isolation.PG_BASE, "--amqp", isolation.AMQP_BASE]
    if own_postgres.available() is None:  # PostgreSQL really restarted, on a server of the run's own
        args.append("--own-postgres")
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode in (0, 3), proc.stdout[-3000:] + proc.stderr[-5000:]
    print(proc.stdout)  # the table, kept in the test's output
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(900)
def test_every_fault_keeps_each_accepted_message_once_at_every_member_and_the_ledger_exact(report):
    assert [p["fault"] for p in report["phases"]] == list(FAULTS)
    for phase in report["phases"]:
        assert phase["accepted"] > 0, phase
        assert (phase["lost"], phase["duplicated"]) == (0, 0), phase
    assert report["missing_receptions"] == 0
    assert report["accepted"] <= report["stored"]  # every acked send is stored (and maybe a late one)
    assert report["ledger"]["ok"], report["ledger"]
    assert report["refused"] == {}  # every refusal said to retry, and the retry got through
    assert report["guarantees_ok"]


@pytest.mark.timeout(900)
def test_the_faults_were_felt_and_answered(report):
    phases = {p["fault"]: p for p in report["phases"]}
    # Sends during the broker and Redis outages were refused unavailable (and retried), not hung.
    assert phases["rabbitmq-restart"]["retried"].get("unavailable", 0) > 0
    assert phases["redis-restart"]["retried"].get("unavailable", 0) > 0
    assert phases["rabbitmq-restart"]["unanswered"] == 0
    assert phases["redis-restart"]["unanswered"] == 0
    assert report["reconnects"] > 0  # the killed node's clients moved to the other one
    assert int(phases["redis-client-kill"]["notes"][0].split()[0]) > 0


@pytest.mark.timeout(900)
def test_postgresql_was_really_restarted_where_a_server_of_our_own_can_run(report):
    why_not = own_postgres.available()
    if why_not:
        pytest.skip(f"PostgreSQL was cut off through the proxy instead: {why_not}")
    phase = next(p for p in report["phases"] if p["fault"] == "postgresql-restart")
    assert phase["notes"] == ["the run's own server stopped (pg_ctl -m fast) and started"]
    assert (phase["lost"], phase["duplicated"], phase["unanswered"]) == (0, 0, 0)
