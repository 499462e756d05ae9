"""``python -m scripts.chaos``: faults under a steady chat load, one at a time, and what people saw.

It starts an isolated system (``scripts/chaos_stack.py``: two ingress nodes, a chat pool, a
database, a vhost and a Redis server of its own), connects Socket.IO clients that behave as a
careful app written for the original server would (one user each, ``--rooms`` rooms; a send
refused ``unavailable``, ``overloaded`` or ``rate_limited`` is retried after ``retryAfterMs``, an
``unconfirmed`` or unanswered one with the same ``clientMessageId``; a dropped socket reconnects,
to the other node if its own is gone, and re-joins with ``sinceSeq`` to catch up), sends a steady
``--rate`` and, one after another, for each fault:

- ``workers-kill``: ``kill -9`` of the whole chat pool, then a new pool;
- ``ingress-kill``: ``kill -9`` of one node (its clients reconnect to the other), then it restarts;
- ``rabbitmq-restart`` / ``postgresql-restart``: the service taken away for ``--outage`` seconds
  (every connection to it cut and new ones refused, through a proxy; the machine's server is
  never stopped), then back; with ``--stop-broker``, RabbitMQ's app itself is stopped and started;
  with ``--own-postgres``, the run uses a PostgreSQL server of its own (``scripts/own_postgres.py``)
  and really restarts it: ``pg_ctl stop -m fast``, the outage, ``pg_ctl start``;
- ``redis-client-kill``: ``CLIENT KILL`` of every connection to the run's Redis;
- ``redis-restart``: the run's Redis server ``kill -9``-ed (its data gone) and started again.

For each fault it reports sends accepted, accepted messages lost (missing from storage, or from a
member of the room after catch-up), duplicate ``newMessage`` (a message received twice by one
client, across its reconnections), sends left without an answer for ``--ack-timeout`` seconds
on a socket that stayed connected (those whose socket dropped are counted apart, as cut off),
and the recovery time: from the service's return (or the new process being up; from the fault
itself for an ingress kill and a Redis client kill, which nothing restarts) until messages were
delivered at the rate of before the fault again, and the longest silence (no message delivered)
from the fault on; and, for the whole
run, whether the ledger is exact (each user's charges and words against what was stored). It
exits 1 on any loss, duplicate or ledger mismatch, 3 if only a time target was missed (an
unanswered send, or recovery slower than ``--recover-within``), else 0.

    python -m scripts.chaos                    # every fault, the long form
    python -m scripts.chaos --short --json     # the test suite's form
    python -m scripts.chaos --faults redis-restart,workers-kill
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import socketio

from domain.credits import CreditPolicy
from domain.words import count_words
from infra import event_loop
from schemas.commands import send_command_ids
from scripts.bench_chat import rabbitmqctl
from scripts.chaos_stack import ChaosStack, StackConfig
from scripts.own_postgres import OwnPostgres
from scripts.token import mint

FAULTS = (
    "workers-kill",
    "ingress-kill",
    "rabbitmq-restart",
    "postgresql-restart",
    "redis-client-kill",
    "redis-restart",
)
RETRYABLE = {"unavailable", "overloaded", "rate_limited", "unconfirmed", "internal"}
SELF_HEALING = {"ingress-kill", "redis-client-kill"}  # nothing is restarted: recovery counts from the fault
NORMAL_FRACTION = 0.8  # recovered: a second with at least this share of the pre-fault accepted rate
GRANT_CREDITS = 10_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, in order (default: all: {FAULTS})")
    p.add_argument("--clients", type=int, default=40)
    p.add_argument("--rooms", type=int, default=8)
    p.add_argument("--rate", type=float, default=100.0, help="sends per second, all clients together")
    p.add_argument("--words", type=int, default=12, help="words per message")
    p.add_argument("--before", type=float, default=8.0, help="seconds of load before each fault")
    p.add_argument("--after", type=float, default=15.0, help="seconds of load after each fault")
    p.add_argument("--outage", type=float, default=5.0, help="seconds a service stays away")
    p.add_argument("--ack-timeout", type=float, default=5.0, help="a send unanswered this long is counted")
    p.add_argument("--recover-within", type=float, default=10.0, help="the recovery target, in seconds")
    p.add_argument("--drain", type=float, default=20.0, help="seconds to wait for the last deliveries")
    p.add_argument("--short", action="store_true", help="the test suite's form: 20 clients, 4 rooms, shorter phases")
    p.add_argument("--json", action="store_true", help="also print the report as JSON")
    p.add_argument(
        "--stop-broker",
        action="store_true",
        help="rabbitmq-restart stops the broker itself (rabbitmqctl stop_app, start_app) instead of cutting it"
        " off through the proxy: every vhost on it is affected, so only on a broker of your own",
    )
    p.add_argument(
        "--own-postgres",
        action="store_true",
        help="run on a PostgreSQL server of the run's own (initdb in a temporary directory), which"
        " postgresql-restart stops (-m fast) and starts for real; --pg is then not used",
    )
    p.add_argument("--pg", default=StackConfig.pg, help="the PostgreSQL server (its URL without a database)")
    p.add_argument("--amqp", default=StackConfig.amqp, help="the RabbitMQ server (its URL without a vhost)")
    args = p.parse_args(argv)
    if args.short:
        args.clients, args.rooms, args.rate = 20, 4, 40.0
        args.before, args.after, args.outage = 3.0, 8.0, 3.0
    args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(args.faults) - set(FAULTS))
    if unknown:
        p.error(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
    if args.clients < 2 or args.rooms < 1 or args.rate <= 0:
        p.error("--clients must be at least 2, --rooms at least 1, --rate positive")
    return args


# --- what happened, per phase ----------------------------------------------------------------


@dataclass
class Phase:
    fault: str
    started: float  # monotonic: load before the fault begins
    fault_at: float = 0.0
    fault_ended: float = 0.0  # the service is back, or the new process is up
    ended: float = 0.0
    accepted: int = 0
    unanswered: int = 0
    cut_off: int = 0  # sends whose socket dropped before their answer (the client sees the disconnect)
    retries: Counter[str] = field(default_factory=Counter)
    recovery_s: float | None = None
    silence_s: float = 0.0  # the longest time without a delivery, from the fault on
    notes: list[str] = field(default_factory=list)


class Timeline:
    """The phases in order, and when each message first reached its sender (for recovery times)."""

    def __init__(self) -> None:
        self.phases: list[Phase] = []
        self.delivered_at: list[float] = []

    @property
    def current(self) -> Phase:
        return self.phases[-1]

    def phase_at(self, t: float) -> Phase:
        found = self.phases[0]
        for phase in self.phases:
            if phase.started <= t:
                found = phase
        return found

    def recovery(self, phase: Phase) -> float | None:
        """Seconds from the fault's end to the first whole second in which messages were delivered
        at ``NORMAL_FRACTION`` of the rate before the fault, or more."""
        before = [t for t in self.delivered_at if phase.started <= t < phase.fault_at]
        baseline = len(before) / max(phase.fault_at - phase.started, 1e-9)
        if baseline <= 0:
            return None
        start = phase.fault_at if phase.fault in SELF_HEALING else phase.fault_ended
        t = start
        while t + 1 <= phase.ended:
            if sum(1 for a in self.delivered_at if t <= a < t + 1) >= NORMAL_FRACTION * baseline:
                return t - start
            t += 0.25
        return None

    def longest_silence(self, phase: Phase) -> float:
        """The longest time, from the fault to the phase's end, in which no message was delivered."""
        times = [phase.fault_at, *sorted(t for t in self.delivered_at if phase.fault_at <= t <= phase.ended)]
        times.append(phase.ended)
        return max(b - a for a, b in itertools.pairwise(times))


@dataclass
class Snapshot:
    stored: dict[str, tuple[str, str, int]]  # messageId -> (room, user, words), every stored message
    accounts: list[dict[str, Any]]  # the run's user accounts, with their charge postings summed


# --- the clients -------------------------------------------------------------------------------


class Member:
    """One user in one room, through one socket at a time, as a careful app would behave."""

    def __init__(self, run: ChaosRun, index: int) -> None:
        self.run = run
        self.index = index
        self.user_id = f"chaos-{run.stack.run_id}-{index}"
        self.room_id = f"chaos-{run.stack.run_id}-room-{index % run.args.rooms}"
        self.home = index % len(run.stack.ports)
        self.received: Counter[str] = Counter()  # messageId -> times received, over every socket
        self.last_seq = 0
        self.sio: socketio.AsyncClient | None = None
        self.ready = asyncio.Event()
        self.reconnects = 0
        self._token = mint(run.stack.jwt_secret, self.user_id, self.user_id, False, 24 * 3600)
        self._reconnecting: asyncio.Task[None] | None = None

    # receiving
    def _take(self, message: dict[str, Any]) -> None:
        if message.get("roomId") != self.room_id or not isinstance(message.get("messageId"), str):
            return
        self.received[message["messageId"]] += 1
        if self.received[message["messageId"]] == 1 and message.get("userId") == self.user_id:
            self.run.timeline.delivered_at.append(time.monotonic())  # its own message, back
        seq = message.get("seq")
        if isinstance(seq, int):
            self.last_seq = max(self.last_seq, seq)

    async def _on_room_joined(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict) or data.get("roomId") != self.room_id:
            return
        for message in data.get("history") or []:
            self._take(message)
        if data.get("hasMore"):
            await self.run.catch_up(self)

    # connecting
    async def connect(self) -> None:
        """Connect and join, trying its own node first and then the others, until one takes it."""
        ports = self.run.stack.ports
        attempt = 0
        while not self.run.stopping:
            port = ports[(self.home + attempt) % len(ports)]
            attempt += 1
            sio = socketio.AsyncClient(reconnection=False)
            sio.on("newMessage", self._take)
            sio.on("roomJoined", self._on_room_joined)
            sio.on("disconnect", functools.partial(self._lost, sio))
            try:
                await sio.connect(
                    f"http://127.0.0.1:{port}", auth={"token": self._token}, transports=["websocket"], wait_timeout=5
                )
                join = {"roomId": self.room_id, **({"sinceSeq": self.last_seq} if self.last_seq else {})}
                ack = await sio.call("joinRoom", join, timeout=5)
                if isinstance(ack, dict) and ack.get("status") == "accepted":
                    self.sio = sio
                    self.ready.set()
                    return
            except (socketio.exceptions.SocketIOError, OSError, TimeoutError):
                pass
            await _quietly(sio.disconnect())
            await asyncio.sleep(min(0.2 * attempt, 1.0))

    def _lost(self, sio: socketio.AsyncClient, *_: Any) -> None:
        if sio is not self.sio or self.run.stopping:
            return
        self.ready.clear()
        self.sio = None
        self.reconnects += 1
        self._reconnecting = asyncio.create_task(self.connect())

    async def close(self) -> None:
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self.sio is not None:
            await _quietly(self.sio.disconnect())

    # sending
    async def send_until_answered(self, client_message_id: str) -> None:
        """One message, retried with its clientMessageId until it is accepted (or the run ends)."""
        run, args = self.run, self.run.args
        payload = {"roomId": self.room_id, "message": run.text, "clientMessageId": client_message_id}
        while not run.stopping:
            await self.ready.wait()
            sio = self.sio
            if sio is None:
                continue
            phase = run.timeline.current
            try:
                ack = await sio.call("sendMessage", payload, timeout=args.ack_timeout)
            except socketio.exceptions.TimeoutError:
                # Apart: in the condition, mypy would narrow sio to self.sio's type, None included.
                still_current = sio is self.sio
                if still_current and sio.connected:
                    phase.unanswered += 1
                else:  # its node went away with it: the app saw the disconnect, and sends again
                    phase.cut_off += 1
                continue
            except socketio.exceptions.SocketIOError:
                continue  # the socket went away: send again once reconnected
            status = ack.get("status") if isinstance(ack, dict) else None
            if status == "accepted":
                run.accepted(self, client_message_id)
                return
            code = (ack.get("error") or {}).get("code") if isinstance(ack, dict) else "malformed"
            phase.retries[code or "?"] += 1
            if code not in RETRYABLE:
                run.refused[code or "?"] += 1
                return
            wait_ms = ack.get("retryAfterMs") or 200
            await asyncio.sleep(wait_ms / 1000 * random.uniform(1.0, 1.2))

    async def send_loop(self, interval_s: float) -> None:
        n = 0
        next_at = time.monotonic() + random.uniform(0, interval_s)
        while not self.run.stopping:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + interval_s, time.monotonic())
            n += 1
            await self.send_until_answered(f"c{n}")


async def _quietly(job: Awaitable[Any]) -> None:
    try:
        await job
    except Exception:
        pass


# --- the run -----------------------------------------------------------------------------------


class ChaosRun:
    def __init__(self, args: argparse.Namespace, stack: ChaosStack, own_postgres: OwnPostgres | None = None) -> None:
        self.args = args
        self.stack = stack
        self.own_postgres = own_postgres  # postgresql-restart restarts it instead of cutting the proxy
        self.text = " ".join(f"palabra{i}" for i in range(args.words))
        self.words = count_words(self.text)
        self.timeline = Timeline()
        self.members = [Member(self, i) for i in range(args.clients)]
        self.accepted_ids: dict[str, Member] = {}  # messageId -> sender
        self.sent_phase: dict[str, Phase] = {}  # messageId -> phase of its first acceptance
        self.refused: Counter[str] = Counter()
        self.stopping = False

    def accepted(self, member: Member, client_message_id: str) -> None:
        _, message_id = send_command_ids(member.user_id, client_message_id)
        phase = self.timeline.current
        if message_id not in self.accepted_ids:
            phase.accepted += 1
            self.sent_phase[message_id] = phase
        self.accepted_ids[message_id] = member

    async def catch_up(self, member: Member) -> None:
        """The pages after ``roomJoined``'s first one, over HTTP, as the chat page reads them."""
        url = f"http://127.0.0.1:{self.stack.ports[member.home]}/api/rooms/{member.room_id}/messages"
        headers = {"Authorization": f"Bearer {member._token}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            while True:
                try:
                    async with http.get(url, params={"afterSeq": member.last_seq, "limit": 200}, headers=headers) as r:
                        page = await r.json()
                except (aiohttp.ClientError, TimeoutError):
                    url = f"http://127.0.0.1:{self.stack.ports[1 - member.home]}/api/rooms/{member.room_id}/messages"
                    await asyncio.sleep(0.5)
                    continue
                for message in page.get("messages", []):
                    member._take(message)
                if not page.get("hasMore"):
                    return

    async def grant(self) -> None:
        headers = {"x-admin-token": self.stack.admin_token}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

            async def one(member: Member) -> None:
                body = {"credits": GRANT_CREDITS, "reason": "chaos", "idempotencyKey": "chaos"}
                url = f"http://127.0.0.1:{self.stack.ports[0]}/api/credits/grant/{member.user_id}"
                async with http.post(url, json=body, headers=headers) as resp:
                    if resp.status not in (200, 201):
                        raise RuntimeError(f"grant for {member.user_id}: {resp.status} {await resp.text()}")

            await asyncio.gather(*(one(m) for m in self.members))

    async def inject(self, fault: str) -> None:
        """Make ``fault`` happen; return once the service is back or the new process is up."""
        stack, phase = self.stack, self.timeline.current
        phase.fault_at = time.monotonic()
        if fault == "workers-kill":
            await stack.kill9_pool()
            await asyncio.sleep(1.0)
            await stack.start_pool()
        elif fault == "ingress-kill":
            port = stack.ports[0]
            await stack.kill9_node(port)
            await asyncio.sleep(1.0)
            stack.start_node(port)
            await stack.wait_healthy(port)
        elif fault == "rabbitmq-restart" and self.args.stop_broker:
            await asyncio.to_thread(rabbitmqctl, "stop_app")
            try:
                await asyncio.sleep(self.args.outage)
            finally:
                await asyncio.to_thread(rabbitmqctl, "start_app")
            phase.notes.append("the broker's app stopped and started (rabbitmqctl)")
        elif fault == "rabbitmq-restart":
            await stack.amqp_proxy.cut()
            await asyncio.sleep(self.args.outage)
            await stack.amqp_proxy.restore()
        elif fault == "postgresql-restart" and self.own_postgres is not None:
            await self.own_postgres.stop("fast")
            try:
                await asyncio.sleep(self.args.outage)
            finally:
                await self.own_postgres.start()
            phase.notes.append("the run's own server stopped (pg_ctl -m fast) and started")
        elif fault == "postgresql-restart":
            await stack.pg_proxy.cut()
            await asyncio.sleep(self.args.outage)
            await stack.pg_proxy.restore()
        elif fault == "redis-client-kill":
            phase.notes.append(f"{await stack.kill_redis_clients()} connections killed")
        elif fault == "redis-restart":
            await stack.kill9_redis()
            await asyncio.sleep(1.0)
            await stack.start_redis()
        else:  # parse_args refuses unknown faults
            raise ValueError(fault)
        phase.fault_ended = time.monotonic()

    async def run(self) -> dict[str, Any]:
        args = self.args
        await self.grant()
        await asyncio.gather(*(m.connect() for m in self.members))
        interval = len(self.members) / args.rate
        senders = [asyncio.create_task(m.send_loop(interval)) for m in self.members]
        try:
            for fault in args.faults:
                phase = Phase(fault, time.monotonic())
                self.timeline.phases.append(phase)
                await asyncio.sleep(args.before)
                await self.inject(fault)
                await asyncio.sleep(args.after)
                phase.ended = time.monotonic()
                phase.recovery_s = self.timeline.recovery(phase)
                phase.silence_s = self.timeline.longest_silence(phase)
                _progress(phase)
        finally:
            self.stopping = True
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
        report = self.report(await self.settle())
        await asyncio.gather(*(m.close() for m in self.members))
        return report

    async def settle(self) -> Snapshot:
        """Wait until storage is still (sends answered late may yet be applied) and every stored
        message has reached every member, or ``--drain`` runs out; then read storage and the ledger."""
        deadline = time.monotonic() + self.args.drain
        previous: Snapshot | None = None
        while True:
            snapshot = await self.snapshot()
            still = previous is not None and len(previous.stored) == len(snapshot.stored)
            if still and all(not self.missing_at(m, snapshot.stored) for m in self.members):
                return snapshot
            if time.monotonic() > deadline:
                return snapshot
            previous = snapshot
            await asyncio.sleep(1.0)

    async def snapshot(self) -> Snapshot:
        """Stored messages and accounts, read in one transaction so that they agree."""
        conn = await asyncpg.connect(self.stack.direct_database_url)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                messages = await conn.fetch("SELECT message_id::text, room_id, user_id, words FROM messages")
                accounts = await conn.fetch(
                    "SELECT account_id, credits, words_used_total, credits_charged_total,"
                    " (SELECT coalesce(sum(-p.amount), 0) FROM ledger_postings p"
                    "   JOIN ledger_transactions t USING (txn_id)"
                    "   WHERE p.account_id = a.account_id AND t.kind = 'charge' AND p.amount < 0) AS posted"
                    " FROM accounts a WHERE account_id LIKE 'user:chaos-%'"
                )
        finally:
            await conn.close()
        return Snapshot({r[0]: (r[1], r[2], r[3]) for r in messages}, [dict(r) for r in accounts])

    def missing_at(self, member: Member, stored: dict[str, tuple[str, str, int]]) -> list[str]:
        return [mid for mid, (room, _, _) in stored.items() if room == member.room_id and mid not in member.received]

    def ledger(self, snapshot: Snapshot) -> dict[str, Any]:
        """Each user's words used and credits charged against what was stored for them."""
        words: dict[str, int] = defaultdict(int)
        for _, user, n in snapshot.stored.values():
            words[user] += n
        policy = CreditPolicy()
        mismatches = []
        for row in snapshot.accounts:
            user = row["account_id"].removeprefix("user:")
            charged = math.ceil(words[user] / policy.words_per_credit)
            found = (row["words_used_total"], row["credits_charged_total"], int(row["posted"]), row["credits"])
            expected = (words[user], charged, charged, GRANT_CREDITS - charged)
            if found != expected:
                mismatches.append({"user": user, "found": found, "expected": expected})
        users = len(snapshot.accounts)
        return {"ok": not mismatches and users == len(self.members), "users": users, "mismatches": mismatches}

    def report(self, snapshot: Snapshot) -> dict[str, Any]:
        stored = snapshot.stored
        lost_by_phase: Counter[str] = Counter()
        dup_by_phase: Counter[str] = Counter()
        first = self.timeline.phases[0]
        for message_id in self.accepted_ids:
            if message_id not in stored:
                lost_by_phase[self.sent_phase.get(message_id, first).fault] += 1
        missing_receptions = 0
        for member in self.members:
            for message_id in self.missing_at(member, stored):
                missing_receptions += 1
                lost_by_phase[self.sent_phase.get(message_id, first).fault] += 1
            for message_id, times in member.received.items():
                if times > 1:
                    dup_by_phase[self.sent_phase.get(message_id, first).fault] += times - 1
        ledger = self.ledger(snapshot)
        phases = [
            {
                "fault": p.fault,
                "accepted": p.accepted,
                "lost": lost_by_phase[p.fault],
                "duplicated": dup_by_phase[p.fault],
                "unanswered": p.unanswered,
                "cut_off": p.cut_off,
                "recovery_s": None if p.recovery_s is None else round(p.recovery_s, 2),
                "silence_s": round(p.silence_s, 2),
                "retried": dict(p.retries),
                "notes": p.notes,
            }
            for p in self.timeline.phases
        ]
        guarantees_ok = ledger["ok"] and not any(p["lost"] or p["duplicated"] for p in phases)
        targets_ok = all(
            p["unanswered"] == 0 and p["recovery_s"] is not None and p["recovery_s"] <= self.args.recover_within
            for p in phases
        )
        return {
            "phases": phases,
            "stored": len(stored),
            "accepted": len(self.accepted_ids),
            "missing_receptions": missing_receptions,
            "refused": dict(self.refused),
            "reconnects": sum(m.reconnects for m in self.members),
            "ledger": ledger,
            "guarantees_ok": guarantees_ok,
            "targets_ok": targets_ok,
        }


def _progress(phase: Phase) -> None:
    recovery = "-" if phase.recovery_s is None else f"{phase.recovery_s:.1f} s"
    print(
        f"[chaos] {phase.fault}: accepted {phase.accepted}, unanswered {phase.unanswered},"
        f" back to normal after {recovery}",
        file=sys.stderr,
        flush=True,
    )


def print_report(report: dict[str, Any]) -> None:
    header = f"{'fault':<20} {'accepted':>8} {'lost':>5} {'dup':>5} {'unanswered':>10} {'cut off':>7}"
    header += f" {'silence':>8} {'recovery':>9}"
    print(f"{header}  retried")
    for p in report["phases"]:
        recovery = "-" if p["recovery_s"] is None else f"{p['recovery_s']:.1f} s"
        retried = ", ".join(f"{code} {n}" for code, n in sorted(p["retried"].items())) or "-"
        print(
            f"{p['fault']:<20} {p['accepted']:>8} {p['lost']:>5} {p['duplicated']:>5} {p['unanswered']:>10}"
            f" {p['cut_off']:>7} {p['silence_s']:>6.1f} s {recovery:>9}  {retried}"
        )
    ledger = report["ledger"]
    print(
        f"stored {report['stored']}, accepted {report['accepted']}, reconnects {report['reconnects']},"
        f" ledger {'OK' if ledger['ok'] else 'MISMATCH'} ({ledger['users']} users)"
    )
    for mismatch in ledger["mismatches"][:10]:
        print(f"  {mismatch}")


async def main_async(args: argparse.Namespace) -> int:
    own = OwnPostgres() if args.own_postgres else None
    try:
        if own is not None:
            await own.start()
        stack = ChaosStack(StackConfig(pg=own.url if own else args.pg, amqp=args.amqp))
        try:
            print(f"[chaos] starting an isolated stack ({stack.name}); logs in {stack.log_dir}", file=sys.stderr)
            await stack.start()
            report = await ChaosRun(args, stack, own).run()
        finally:
            await stack.close()
    finally:
        if own is not None:
            await own.remove()
    print_report(report)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    if not report["guarantees_ok"]:
        return 1
    return 0 if report["targets_ok"] else 3


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    event_loop.install("uvloop")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
