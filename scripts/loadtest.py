"""``python -m scripts.loadtest``: drive a running Gatekeeper over Socket.IO as fast as it sustains.

It grants every load-test user credits through the admin HTTP API, connects
``--clients`` sockets round-robin across ``--nodes`` ingress nodes (client i
joins room i % rooms, so rooms span nodes), sends for ``--duration`` seconds
(closed loop: each client sends again as soon as its ack is back, with at most
``--inflight`` sends outstanding; ``--loop delivery`` waits for the message to
come back instead, which measures what the workers sustain end to end rather
than what ingress accepts; ``--rate`` caps the total). With ``--open-loop --rate R``
it sends instead on a fixed schedule, R sends per second dealt round-robin over the
clients, whether or not earlier acks are back, and measures latencies from each send's
scheduled time, so a server (or a generator) that falls behind cannot hide its queueing.
It then waits for in-flight deliveries to drain, and prints throughput, latencies, rejections
and an integrity and ledger check. Exit code 1 on a ledger mismatch or a lost
message, 2 when the run could not be set up.

Secrets and the credit policy come from the same Settings as the servers
(environment and ``.env``), so run it with the environment the system runs with.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import re
import secrets
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import socketio

from domain.credits import Balance, Blocked, CreditPolicy, charge_words
from domain.words import count_words
from infra import event_loop
from infra.settings import Settings
from schemas.socket_events import MAX_MESSAGE_CHARS
from scripts.token import mint

RUN_ID = re.compile(r"^[A-Za-z0-9.-]{1,40}$")
MAX_GRANT = 1_000_000_000
# Generous ceiling on one client's send rate, used only to size the default grant:
# a client never sends more than its grant covers (see LoadClient.may_send).
CEILING_MSGS_PER_S_PER_SLOT = 500
HTTP_CONCURRENCY = 20
CONNECT_CONCURRENCY = 25
# Open loop: scheduled sends one client may have unacknowledged before the generator drops its next ones.
DEFAULT_MAX_OUTSTANDING = 1000


# --- options ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--base-port", type=int, default=8080, help="first ingress port (default: 8080)")
    p.add_argument("--nodes", type=int, default=1, help="ingress nodes on ports base..base+N-1 (default: 1)")
    p.add_argument("--clients", type=int, default=200, help="sockets, one user each (default: 200)")
    p.add_argument("--rooms", type=int, default=20, help="rooms; client i joins room i %% rooms (default: 20)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of sending (default: 30)")
    p.add_argument("--words", type=int, default=20, help="words per message (default: 20)")
    p.add_argument("--credits", type=int, default=None, help="credits granted per user (default: enough)")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="cap on total sends per second, or with --open-loop the offered rate (default: none)",
    )
    p.add_argument("--inflight", type=int, default=1, help="max unacknowledged sends per client (default: 1)")
    p.add_argument(
        "--open-loop",
        action="store_true",
        help="with --rate R: send R/s on a fixed schedule whether or not acks are back; latencies count from"
        " each send's scheduled time (default: closed loop)",
    )
    p.add_argument(
        "--max-outstanding",
        type=int,
        default=DEFAULT_MAX_OUTSTANDING,
        help="open loop: unacknowledged sends per client beyond which the generator drops (and counts) its"
        f" scheduled sends (default: {DEFAULT_MAX_OUTSTANDING})",
    )
    p.add_argument(
        "--loop",
        choices=("ack", "delivery"),
        default="ack",
        help="a client sends again once its ack (default) or its own newMessage is back",
    )
    p.add_argument("--run-id", default=None, help="names users lt-<id>-<i> and rooms lt-<id>-room-<j>")
    p.add_argument("--ack-timeout", type=float, default=10.0, help="seconds to wait for one ack (default: 10)")
    p.add_argument("--drain", type=float, default=15.0, help="seconds to wait for deliveries (default: 15)")
    p.add_argument("--database-url", default=None, help="for the stored-message check (default: Settings)")
    p.add_argument("--json", action="store_true", help="also print a JSON summary")
    args = p.parse_args(argv)
    for name in ("nodes", "clients", "rooms", "words", "inflight", "max_outstanding"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration <= 0 or args.ack_timeout <= 0 or args.drain < 0:
        p.error("--duration and --ack-timeout must be positive, --drain not negative")
    if args.rate is not None and args.rate <= 0:
        p.error("--rate must be positive")
    if args.open_loop and args.rate is None:
        p.error("--open-loop needs --rate (the offered load in sends per second)")
    if args.open_loop and (args.loop != "ack" or args.inflight != 1):
        p.error("--open-loop does not wait for acks or deliveries: drop --loop and --inflight")
    if args.credits is not None and not 1 <= args.credits <= MAX_GRANT:
        p.error(f"--credits must be 1..{MAX_GRANT}")
    args.run_id = args.run_id or secrets.token_hex(4)
    if not RUN_ID.fullmatch(args.run_id):
        p.error("--run-id must be 1-40 characters from [A-Za-z0-9.-]")
    if len(message_text(args.words)) > MAX_MESSAGE_CHARS:
        p.error(f"--words {args.words} makes a message longer than {MAX_MESSAGE_CHARS} characters")
    return args


def message_text(words: int) -> str:
    return " ".join(f"w{k}" for k in range(1, words + 1))


def default_credits(args: argparse.Namespace, policy: CreditPolicy) -> int:
    """Enough credits that no user is ever blocked, with a wide margin (grants are free)."""
    per_user_rate = CEILING_MSGS_PER_S_PER_SLOT * args.inflight
    if args.open_loop:
        per_user_rate = 2 * args.rate / args.clients + 1  # the schedule gives each client rate/clients
    elif args.rate is not None:
        per_user_rate = min(per_user_rate, 2 * args.rate / args.clients + 1)
    max_msgs = math.ceil(per_user_rate * (args.duration + args.ack_timeout + 1))
    return min(MAX_GRANT, math.ceil(max_msgs * args.words / policy.words_per_credit) + 1)


# --- measurements ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Sent:
    client: int
    client_message_id: str
    t_emit: float
    t_ack: float | None = None
    message_id: str | None = None
    outcome: str = "pending"  # accepted | rejected | timeout | disconnected
    t_sched: float | None = None  # open loop: when the schedule said to send it

    @property
    def t_start(self) -> float:
        """Where latencies count from: the scheduled time in open loop, else the emit."""
        return self.t_emit if self.t_sched is None else self.t_sched


@dataclass(slots=True)
class Seen:
    """One message as the clients saw it (keyed by messageId)."""

    user_id: str
    room_id: str
    words: int
    timestamp_ms: int
    client_message_id: str | None
    first_t: float
    own_t: float | None = None
    other_t: float | None = None
    receivers: int = 0


@dataclass(slots=True)
class UserStats:
    credits: int
    words_left: int
    words_used_total: int
    credits_charged_total: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> UserStats:
        return cls(body["credits"], body["wordsLeft"], body["wordsUsedTotal"], body["creditsChargedTotal"])


STATS_SETTLE_S = 5.0  # how long the final stats may take to count the last deliveries


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(values_s: list[float]) -> dict[str, Any]:
    ms = sorted(v * 1000 for v in values_s)
    return {
        "n": len(ms),
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": ms[-1] if ms else None,
    }


def open_loop_total(rate: float, duration: float) -> int:
    """How many sends the open-loop schedule holds: slots ``n`` with ``n / rate < duration``."""
    n = math.ceil(duration * rate)
    while n > 0 and (n - 1) / rate >= duration:  # guard the float product on either side
        n -= 1
    while n / rate < duration:
        n += 1
    return n


def open_loop_slots(index: int, clients: int, rate: float, duration: float) -> range:
    """The slots of client ``index`` in the open-loop schedule; slot ``n`` is sent at ``t0 + n / rate``.

    Slots are dealt round-robin (client i gets n = k * clients + i), so together the clients send
    ``rate`` per second evenly spaced, each of them ``rate / clients`` per second.
    """
    return range(index, open_loop_total(rate, duration), clients)


class Pacer:
    """A shared schedule of send slots ``1/rate`` apart; idle time does not build up a burst."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0

    async def wait(self, deadline: float) -> bool:
        now = time.perf_counter()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot >= deadline:
            return False
        if slot > now:
            await asyncio.sleep(slot - now)
        return True


# --- clients --------------------------------------------------------------------------------------


class LoadClient:
    def __init__(self, run: LoadTest, index: int, port: int) -> None:
        self.run = run
        self.index = index
        self.user_id = f"lt-{run.args.run_id}-{index}"
        self.room_id = f"lt-{run.args.run_id}-room-{index % run.args.rooms}"
        self.port = port
        self.sio = socketio.AsyncClient(reconnection=False)
        self.seen: dict[str, int] = {}  # messageId -> receptions on this socket
        self.connected = False
        self.budget_words = 0  # words this user can pay for; set after the grant
        self.committed = 0  # sends that may have been charged (not rejected)
        self.outstanding = 0  # open loop: sends emitted whose ack is not back
        self.seq = itertools.count(1)
        self.waiters: dict[str, asyncio.Future[None]] = {}  # clientMessageId -> own newMessage seen
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("newMessage", self._on_new_message)
        self.sio.on("creditError", self._counter("creditError"))
        self.sio.on("creditWarning", self._counter("creditWarning"))
        self.sio.on("error", self._on_error)

    def _on_connect(self) -> None:
        self.connected = True

    def _on_disconnect(self, *_: Any) -> None:
        self.connected = False
        if not self.run.closing:
            self.run.events["unexpected_disconnect"] += 1

    def _counter(self, name: str) -> Any:
        def count(*_: Any) -> None:
            self.run.events[name] += 1

        return count

    def _on_error(self, data: Any = None) -> None:
        code = data.get("code", "?") if isinstance(data, dict) else "?"
        self.run.events[f"error:{code}"] += 1

    def _on_new_message(self, data: Any) -> None:
        if isinstance(data, dict) and isinstance(data.get("messageId"), str):
            self.run.on_new_message(self, data, time.perf_counter())

    async def connect(self, host: str, token: str, wait_s: float) -> None:
        await self.sio.connect(
            f"http://{host}:{self.port}",
            auth={"token": token},
            transports=["websocket"],
            wait_timeout=wait_s,
        )
        ack = await self.sio.call("joinRoom", {"roomId": self.room_id}, timeout=wait_s)
        if not isinstance(ack, dict) or ack.get("status") != "accepted":
            raise RuntimeError(f"joinRoom {self.room_id} refused: {ack!r}")

    def may_send(self) -> bool:
        return (self.committed + 1) * self.run.args.words <= self.budget_words

    async def close(self) -> None:
        try:
            await self.sio.disconnect()
        except Exception:
            pass


# --- the run --------------------------------------------------------------------------------------


class LoadTest:
    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.settings = settings
        self.policy = settings.credit_policy
        self.ports = [args.base_port + n for n in range(args.nodes)]
        self.nonce = secrets.token_hex(3)  # clientMessageIds never repeat across invocations
        self.text = message_text(args.words)
        self.clients = [LoadClient(self, i, self.ports[i % args.nodes]) for i in range(args.clients)]
        self.members: Counter[str] = Counter(c.room_id for c in self.clients)
        self.sent: dict[str, Sent] = {}  # clientMessageId -> send
        self.accepted: dict[str, Sent] = {}  # messageId -> send
        self.seen: dict[str, Seen] = {}
        self.rejections: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.receptions = 0
        self.raw_duplicates = 0
        self.word_mismatches = 0
        self.budget_stops = 0
        self.lags: list[float] = []  # open loop: emit - scheduled time, per send
        self.generator_dropped = 0  # open loop: scheduled sends skipped at --max-outstanding
        self.peak_outstanding = 0
        self.closing = False
        self.pacer = Pacer(args.rate) if args.rate else None
        self.delivered_event = asyncio.Event()

    # --- callbacks -------------------------------------------------------------------------------
    def on_new_message(self, client: LoadClient, data: dict[str, Any], now: float) -> None:
        message_id = data["messageId"]
        count = client.seen.get(message_id, 0) + 1
        client.seen[message_id] = count
        if count > 1:
            self.raw_duplicates += 1
            return  # deduped on messageId, as every client must
        self.receptions += 1
        seen = self.seen.get(message_id)
        if seen is None:
            words = data.get("words")
            if words != self.args.words:
                self.word_mismatches += 1
            seen = Seen(
                user_id=str(data.get("userId")),
                room_id=str(data.get("roomId")),
                words=words if isinstance(words, int) else -1,
                timestamp_ms=int(data.get("timestamp") or 0),
                client_message_id=data.get("clientMessageId"),
                first_t=now,
            )
            self.seen[message_id] = seen
        seen.receivers += 1
        if seen.user_id == client.user_id:
            seen.own_t = seen.own_t or now
            waiter = client.waiters.pop(str(seen.client_message_id), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        else:
            seen.other_t = seen.other_t or now
        self.delivered_event.set()

    # --- phases ----------------------------------------------------------------------------------
    async def http_each(self, session: aiohttp.ClientSession, method: str, path: str, bodies: list[Any]) -> list[Any]:
        """One admin request per client (round-robin over nodes); returns the JSON bodies."""
        headers = {"x-admin-token": self.settings.admin_token.get_secret_value()}
        gate = asyncio.Semaphore(HTTP_CONCURRENCY)

        async def one(client: LoadClient, body: Any) -> Any:
            url = f"http://{self.args.host}:{client.port}{path.format(user=client.user_id)}"
            async with gate, session.request(method, url, json=body, headers=headers) as resp:
                payload = await resp.json(content_type=None)
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {url} -> {resp.status}: {payload}")
                return payload

        return await asyncio.gather(*(one(c, b) for c, b in zip(self.clients, bodies, strict=True)))

    async def grant(self, session: aiohttp.ClientSession, credits: int) -> list[UserStats]:
        body = {
            "credits": credits,
            "reason": f"loadtest {self.args.run_id}",
            "idempotencyKey": f"loadtest-{self.args.run_id}",
        }
        await self.http_each(session, "POST", "/api/credits/grant/{user}", [body] * len(self.clients))
        return await self.user_stats(session)

    async def user_stats(self, session: aiohttp.ClientSession) -> list[UserStats]:
        bodies = await self.http_each(session, "GET", "/api/credits/stats/{user}", [None] * len(self.clients))
        return [UserStats.from_json(b) for b in bodies]

    async def settled_stats(self, session: aiohttp.ClientSession, baseline: list[UserStats]) -> list[UserStats]:
        """The users' stats once they count every delivered message's words. The workers add words
        used to Redis about once a second, so a read right after the last delivery can be short."""
        delivered = sum(1 for seen in self.seen.values() if seen.client_message_id in self.sent)
        expected = sum(b.words_used_total for b in baseline) + delivered * self.args.words
        deadline = time.monotonic() + STATS_SETTLE_S
        while True:
            after = await self.user_stats(session)
            if sum(a.words_used_total for a in after) >= expected or time.monotonic() > deadline:
                return after
            await asyncio.sleep(0.25)

    async def connect_all(self) -> list[str]:
        secret = self.settings.jwt_secret.get_secret_value()
        ttl = int(self.args.duration + self.args.drain + 3600)
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        failures: list[str] = []

        async def one(client: LoadClient) -> None:
            token = mint(secret, client.user_id, client.user_id, False, ttl)
            async with gate:
                try:
                    await client.connect(self.args.host, token, wait_s=10)
                except Exception as exc:
                    failures.append(f"client {client.index} (port {client.port}): {type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(c) for c in self.clients))
        return failures

    async def sender(self, client: LoadClient, deadline: float) -> None:
        args = self.args
        while time.perf_counter() < deadline and client.connected:
            if not client.may_send():
                self.budget_stops += 1
                return
            if self.pacer is not None and not await self.pacer.wait(deadline):
                return
            cmid = f"{self.nonce}-{client.index}-{next(client.seq)}"
            waiter = asyncio.get_running_loop().create_future() if args.loop == "delivery" else None
            if waiter is not None:
                client.waiters[cmid] = waiter
            sent = Sent(client.index, cmid, time.perf_counter())
            self.sent[cmid] = sent
            client.committed += 1
            try:
                ack = await client.sio.call(
                    "sendMessage",
                    {"roomId": client.room_id, "message": self.text, "clientMessageId": cmid},
                    timeout=args.ack_timeout,
                )
            except socketio.exceptions.TimeoutError:
                sent.outcome = "timeout"
                client.waiters.pop(cmid, None)
                continue
            except socketio.exceptions.SocketIOError:
                sent.outcome = "disconnected"
                client.committed -= 1
                client.waiters.pop(cmid, None)
                return
            sent.t_ack = time.perf_counter()
            code = self.book_ack(client, sent, ack)
            if code is None:
                if waiter is not None:
                    await self.await_delivery(client, cmid, waiter, sent.t_emit + args.ack_timeout)
                continue
            if code in ("rate_limited", "overloaded"):
                retry_s = (ack.get("retryAfterMs") or 100) / 1000 + random.uniform(0, 0.02)
            else:
                retry_s = 0.1  # do not spin on a persistent error
            await asyncio.sleep(max(0.0, min(retry_s, deadline - time.perf_counter())))

    def book_ack(self, client: LoadClient, sent: Sent, ack: Any) -> str | None:
        """Record one send's ack: None when accepted, else the rejection's code."""
        if isinstance(ack, dict) and ack.get("status") == "accepted" and isinstance(ack.get("messageId"), str):
            sent.outcome = "accepted"
            sent.message_id = ack["messageId"]
            self.accepted[sent.message_id] = sent
            return None
        client.waiters.pop(sent.client_message_id, None)
        sent.outcome = "rejected"
        error = ack.get("error") if isinstance(ack, dict) else None
        code = error.get("code", "?") if isinstance(error, dict) else "malformed_ack"
        if code != "unconfirmed":  # published but not confirmed: it may still be charged
            client.committed -= 1
        self.rejections[code] += 1
        return code

    async def open_loop_sender(self, client: LoadClient, t0: float) -> None:
        """Emit this client's slots of the schedule on time, whether or not earlier acks are back."""
        args = self.args
        in_flight: set[asyncio.Task[None]] = set()
        for n in open_loop_slots(client.index, args.clients, args.rate, args.duration):
            t_sched = t0 + n / args.rate
            delay = t_sched - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if not client.connected:
                break
            if not client.may_send():
                self.budget_stops += 1
                break
            if client.outstanding >= args.max_outstanding:
                self.generator_dropped += 1
                continue
            client.committed += 1  # counted before the task runs, so the budget check above stays exact
            client.outstanding += 1
            self.peak_outstanding = max(self.peak_outstanding, client.outstanding)
            task = asyncio.create_task(self.send_scheduled(client, t_sched))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)  # each ends within ack_timeout of its emit

    async def send_scheduled(self, client: LoadClient, t_sched: float) -> None:
        """One open-loop send (already counted in ``committed`` and ``outstanding``)."""
        cmid = f"{self.nonce}-{client.index}-{next(client.seq)}"
        sent = Sent(client.index, cmid, time.perf_counter(), t_sched=t_sched)
        self.lags.append(max(0.0, sent.t_emit - t_sched))
        self.sent[cmid] = sent
        try:
            ack = await client.sio.call(
                "sendMessage",
                {"roomId": client.room_id, "message": self.text, "clientMessageId": cmid},
                timeout=self.args.ack_timeout,
            )
        except socketio.exceptions.TimeoutError:
            sent.outcome = "timeout"
            return
        except socketio.exceptions.SocketIOError:
            sent.outcome = "disconnected"
            client.committed -= 1
            return
        finally:
            client.outstanding -= 1
        sent.t_ack = time.perf_counter()
        self.book_ack(client, sent, ack)

    async def await_delivery(self, client: LoadClient, cmid: str, waiter: asyncio.Future[None], until: float) -> None:
        try:
            await asyncio.wait_for(waiter, max(0.0, until - time.perf_counter()))
        except TimeoutError:
            self.events["delivery_wait_timeout"] += 1
        finally:
            client.waiters.pop(cmid, None)

    def undelivered(self) -> int:
        """Accepted messages that have not yet reached every member of their room."""
        missing = 0
        for message_id, sent in self.accepted.items():
            seen = self.seen.get(message_id)
            room = self.clients[sent.client].room_id
            if seen is None or seen.receivers < self.members[room]:
                missing += 1
        return missing

    async def drain(self) -> float:
        start = time.perf_counter()
        end = start + self.args.drain
        while self.undelivered() and (remaining := end - time.perf_counter()) > 0:
            self.delivered_event.clear()
            try:
                await asyncio.wait_for(self.delivered_event.wait(), min(remaining, 0.25))
            except TimeoutError:
                pass
        return time.perf_counter() - start

    async def progress(self, stop: asyncio.Event, t0: float) -> None:
        last = (t0, 0, 0, 0)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 5)
            except TimeoutError:
                pass
            now = time.perf_counter()
            acc, dlv, rej = len(self.accepted), len(self.seen), sum(self.rejections.values())
            dt = max(now - last[0], 1e-9)
            print(
                f"[loadtest] t={now - t0:5.1f}s accepted {acc} ({(acc - last[1]) / dt:.0f}/s)"
                f" delivered {dlv} ({(dlv - last[2]) / dt:.0f}/s) rejected {rej} ({(rej - last[3]) / dt:.0f}/s)",
                file=sys.stderr,
                flush=True,
            )
            last = (now, acc, dlv, rej)

    def lost_command_ids(self) -> list[str]:
        return [
            f"msg:{self.clients[s.client].user_id}:{s.client_message_id}"
            for mid, s in self.accepted.items()
            if mid not in self.seen
        ]

    async def stored_messages(self) -> dict[str, Any]:
        """What PostgreSQL holds for this run, and what became of each lost command (by its inbox row)."""
        url = self.args.database_url or self.settings.database_url
        prefix = f"lt-{self.args.run_id}-%"
        conn = await asyncpg.connect(url, timeout=10)
        try:
            counts = await conn.fetchrow(
                "SELECT count(*), count(DISTINCT message_id) FROM messages WHERE room_id LIKE $1", prefix
            )
            assert counts is not None  # an aggregate returns one row
            total, distinct = counts
            ids = {str(r[0]) for r in await conn.fetch("SELECT message_id FROM messages WHERE room_id LIKE $1", prefix)}
            charged = await conn.fetchval(
                "SELECT coalesce(sum(-p.amount), 0) FROM ledger_postings p"
                " JOIN ledger_transactions t USING (txn_id)"
                " WHERE t.kind = 'charge' AND p.amount < 0 AND p.account_id LIKE $1",
                f"user:{prefix}",
            )
            lost = self.lost_command_ids()
            statuses: dict[str, str] = {
                r["command_id"]: r["status"]
                for r in await conn.fetch(
                    "SELECT command_id, status FROM inbox WHERE command_id = ANY($1::text[])", lost
                )
            }
        finally:
            await conn.close()
        lost_by_inbox = Counter(statuses.get(command_id, "absent") for command_id in lost)
        return {
            "rows": total,
            "distinct": distinct,
            "ids": ids,
            "charge_postings": int(charged),
            "lost_by_inbox": dict(lost_by_inbox),
        }

    async def run(self) -> int:
        args = self.args
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            credits = args.credits or default_credits(args, self.policy)
            try:
                baseline = await self.grant(session, credits)
            except Exception as exc:
                print(f"[loadtest] could not grant credits: {type(exc).__name__}: {exc}", file=sys.stderr)
                return 2
            for client, base in zip(self.clients, baseline, strict=True):
                client.budget_words = Balance(base.credits, base.words_left).words_available(0, self.policy)
            print(
                f"[loadtest] run {args.run_id}: granted {credits} credits to each of {len(self.clients)} users;"
                f" connecting to {args.host}:{self.ports[0]}-{self.ports[-1]}",
                file=sys.stderr,
                flush=True,
            )
            try:
                failures = await self.connect_all()
                if failures:
                    print(f"[loadtest] {len(failures)} client(s) could not connect and join:", file=sys.stderr)
                    for line in failures[:10]:
                        print(f"  {line}", file=sys.stderr)
                    return 2

                cpu0, t0 = time.process_time(), time.perf_counter()
                deadline = t0 + args.duration
                stop = asyncio.Event()
                reporter = asyncio.create_task(self.progress(stop, t0))
                if args.open_loop:
                    senders = [asyncio.create_task(self.open_loop_sender(c, t0)) for c in self.clients]
                else:
                    senders = [
                        asyncio.create_task(self.sender(c, deadline))
                        for c in self.clients
                        for _ in range(args.inflight)
                    ]
                await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
                t_end = time.perf_counter()
                cpu_window = time.process_time() - cpu0
                receptions_in_window = self.receptions
                await asyncio.gather(*senders)  # each ends within ack_timeout of the deadline
                drained_s = await self.drain()
                stop.set()
                await reporter
                undelivered = self.undelivered()

                try:
                    after: list[UserStats] | None = await self.settled_stats(session, baseline)
                    stats_error = None
                except Exception as exc:
                    after, stats_error = None, f"{type(exc).__name__}: {exc}"
                try:
                    stored: dict[str, Any] | None = await self.stored_messages()
                    db_error = None
                except Exception as exc:
                    stored, db_error = None, f"{type(exc).__name__}: {exc}"
            finally:
                self.closing = True
                try:
                    await asyncio.wait_for(asyncio.gather(*(c.close() for c in self.clients)), 30)
                except TimeoutError:
                    print("[loadtest] some sockets did not close within 30 s", file=sys.stderr)

        summary = self.summarize(
            t0, t_end, cpu_window, receptions_in_window, drained_s, undelivered, credits, baseline, after, stored
        )
        summary["database_error"] = db_error
        summary["ledger"]["stats_error"] = stats_error
        print_report(summary)
        if args.json:
            print(json.dumps(summary, indent=2, sort_keys=True))
        return 0 if summary["ledger"]["ok"] and summary["integrity"]["lost"] == 0 else 1

    # --- results ---------------------------------------------------------------------------------
    def summarize(
        self,
        t0: float,
        t_end: float,
        cpu_window: float,
        receptions_in_window: int,
        drained_s: float,
        undelivered: int,
        credits: int,
        baseline: list[UserStats],
        after: list[UserStats] | None,
        stored: dict[str, Any] | None,
    ) -> dict[str, Any]:
        args, window = self.args, t_end - t0
        outcomes = Counter(s.outcome for s in self.sent.values())
        ack_lat = [s.t_ack - s.t_start for s in self.accepted.values() if s.t_ack is not None]
        delivery_lat: list[float] = []
        incomplete_fanout = 0
        lost_ids = []
        for message_id, sent in self.accepted.items():
            seen = self.seen.get(message_id)
            if seen is None:
                lost_ids.append(message_id)
                continue
            room = self.clients[sent.client].room_id
            if seen.receivers < self.members[room]:
                incomplete_fanout += 1
            first = seen.other_t if self.members[room] > 1 else seen.own_t
            if first is not None:
                delivery_lat.append(first - sent.t_start)

        per_node: dict[int, list[float]] = defaultdict(list)
        for sent in self.accepted.values():
            if sent.t_ack is not None:
                per_node[self.clients[sent.client].port].append(sent.t_ack - sent.t_start)

        # Delivered messages of our own sends, by sender, as the ledger should have charged them.
        ours = {cmid for cmid in self.sent}
        by_user: dict[str, list[Seen]] = defaultdict(list)
        foreign = 0
        for seen in self.seen.values():
            if seen.client_message_id in ours:
                by_user[seen.user_id].append(seen)
            else:
                foreign += 1
        delivered_without_ack = sum(
            1 for mid, s in self.seen.items() if s.client_message_id in ours and mid not in self.accepted
        )

        mismatches: list[dict[str, Any]] = []
        expected_total = charged_total = 0
        replay_blocked = 0
        afters: list[UserStats | None] = list(after) if after is not None else [None] * len(self.clients)
        for client, base, now in zip(self.clients, baseline, afters, strict=True):
            balance = Balance(base.credits, base.words_left)
            expected_charged = 0
            messages = sorted(by_user.get(client.user_id, []), key=lambda s: s.timestamp_ms)
            for seen in messages:
                outcome = charge_words(balance, args.words, seen.timestamp_ms / 1000, self.policy)
                if isinstance(outcome, Blocked):
                    replay_blocked += 1
                    continue
                expected_charged += outcome.credits_charged
                balance = outcome.balance
            expected_total += expected_charged
            if now is None:
                continue  # the stats endpoint did not answer: nothing to compare with
            charged = now.credits_charged_total - base.credits_charged_total
            charged_total += charged
            expect = {
                "charged": expected_charged,
                "credits": base.credits - expected_charged,
                "wordsUsed": base.words_used_total + len(messages) * args.words,
            }
            got = {"charged": charged, "credits": now.credits, "wordsUsed": now.words_used_total}
            if expect != got:
                mismatches.append({"userId": client.user_id, "expected": expect, "actual": got})

        delivered_ids = {mid for mid, s in self.seen.items() if s.client_message_id in ours}
        db: dict[str, Any] | None = None
        if stored is not None:
            db = {
                "rows": stored["rows"],
                "distinct": stored["distinct"],
                "stored_twice": stored["rows"] - stored["distinct"],
                "stored_not_delivered": len(stored["ids"] - delivered_ids),
                "delivered_not_stored": len(delivered_ids - stored["ids"]),
                "charge_postings": stored["charge_postings"],
                "lost_by_inbox_status": stored["lost_by_inbox"],
            }
        ledger_ok = (
            after is not None
            and not mismatches
            and replay_blocked == 0
            and expected_total == charged_total
            and (db is None or (db["charge_postings"] == expected_total and db["stored_twice"] == 0))
        )
        return {
            "run_id": args.run_id,
            "config": {
                "host": args.host,
                "ports": self.ports,
                "clients": args.clients,
                "rooms": args.rooms,
                "words": args.words,
                "duration_s": args.duration,
                "inflight": args.inflight,
                "loop": args.loop,
                "rate_cap": args.rate,
                "open_loop": args.open_loop,
                "credits_per_user": credits,
                "words_per_credit": self.policy.words_per_credit,
            },
            "window_s": window,
            "drain_s": drained_s,
            "loadgen_cpu_pct": 100 * cpu_window / window if window else None,
            "throughput": {
                "sent": len(self.sent),
                "accepted": len(self.accepted),
                "delivered": len(delivered_ids),
                "receptions": self.receptions,
                "sent_per_s": sum(1 for s in self.sent.values() if s.t_emit <= t_end) / window,
                "accepted_per_s": sum(1 for s in self.accepted.values() if s.t_ack and s.t_ack <= t_end) / window,
                "delivered_per_s": sum(1 for s in self.seen.values() if s.first_t <= t_end) / window,
                "receptions_per_s": receptions_in_window / window,
            },
            "latency_ms": {
                "ack": latency_summary(ack_lat),
                "delivery": latency_summary(delivery_lat),
                "ack_by_port": {str(port): latency_summary(v) for port, v in sorted(per_node.items())},
            },
            "outcomes": dict(outcomes),
            "rejections": dict(self.rejections),
            "events": dict(self.events),
            "integrity": {
                "lost": len(lost_ids),
                "lost_sample": lost_ids[:5],
                "incomplete_fanout": incomplete_fanout,
                "undelivered_after_drain": undelivered,
                "raw_duplicates": self.raw_duplicates,
                "delivered_without_ack": delivered_without_ack,
                "foreign_messages": foreign,
                "word_count_mismatches": self.word_mismatches,
                "budget_stops": self.budget_stops,
            },
            "open_loop": self.open_loop_summary(t0, t_end) if args.open_loop else None,
            "database": db,
            "ledger": {
                "ok": ledger_ok,
                "users": len(self.clients),
                "mismatched_users": len(mismatches),
                "mismatch_sample": mismatches[:5],
                "replay_blocked": replay_blocked,
                "expected_charged": expected_total,
                "charged": charged_total,
            },
        }

    def open_loop_summary(self, t0: float, t_end: float) -> dict[str, Any]:
        """What the generator offered against its schedule, and how far behind it fell."""
        args, window = self.args, t_end - t0
        emitted_in_window = sum(1 for s in self.sent.values() if s.t_emit <= t_end)
        scheduled = open_loop_total(args.rate, args.duration)
        return {
            "rate": args.rate,
            "scheduled": scheduled,
            "emitted": len(self.sent),
            "emitted_after_window": len(self.sent) - emitted_in_window,
            "offered_per_s": emitted_in_window / window if window else None,
            "dropped_by_generator": self.generator_dropped,
            "not_emitted_client_stopped": scheduled - len(self.sent) - self.generator_dropped,
            "max_outstanding_per_client": args.max_outstanding,
            "peak_outstanding_per_client": self.peak_outstanding,
            "lag_ms": latency_summary(self.lags),
        }


# --- report ---------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(s: dict[str, Any]) -> None:
    c, t, lat, integ, led = s["config"], s["throughput"], s["latency_ms"], s["integrity"], s["ledger"]
    ports = c["ports"]
    port_range = f"{ports[0]}" if len(ports) == 1 else f"{ports[0]}-{ports[-1]}"
    rate = "no rate cap" if c["rate_cap"] is None else f"rate cap {c['rate_cap']:g}/s"
    mode = f"inflight {c['inflight']}  loop on {c['loop']}  {rate}"
    if c.get("open_loop"):
        mode = f"open loop at {c['rate_cap']:g}/s (latencies from the scheduled send time)"
    print()
    print(f"Gatekeeper load test  run {s['run_id']}")
    print(
        f"  {c['host']}:{port_range} ({len(ports)} node(s))  clients {c['clients']}  rooms {c['rooms']}"
        f"  words {c['words']}  {mode}"
        f"  credits/user {c['credits_per_user']}"
    )
    print(
        f"  window {s['window_s']:.1f}s  drain {s['drain_s']:.1f}s  load generator CPU {_fmt(s['loadgen_cpu_pct'], 0)}%"
        " of one core"
    )
    print()
    print(f"  {'throughput':<24}{'total':>10}{'per s':>12}")
    for label, total, per_s in (
        ("sent", t["sent"], t["sent_per_s"]),
        ("accepted", t["accepted"], t["accepted_per_s"]),
        ("delivered (messages)", t["delivered"], t["delivered_per_s"]),
        ("fan-out receptions", t["receptions"], t["receptions_per_s"]),
    ):
        print(f"  {label:<24}{total:>10}{per_s:>12.1f}")
    print()
    print(f"  {'latency (ms)':<24}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'n':>9}")
    rows = [("ack", lat["ack"]), ("delivery", lat["delivery"])]
    rows += [(f"  ack via :{port}", v) for port, v in lat["ack_by_port"].items()]
    for label, v in rows:
        print(f"  {label:<24}{_fmt(v['p50']):>9}{_fmt(v['p95']):>9}{_fmt(v['p99']):>9}{_fmt(v['max']):>9}{v['n']:>9}")
    ol = s.get("open_loop")
    if ol is not None:
        lag = ol["lag_ms"]
        print()
        print(
            f"  open loop               offered {_fmt(ol['offered_per_s'])}/s of {ol['rate']:g}/s scheduled;"
            f" emitted {ol['emitted']} of {ol['scheduled']} ({ol['emitted_after_window']} after the window)"
        )
        print(f"  behind schedule (ms)    p50 {_fmt(lag['p50'])}  p99 {_fmt(lag['p99'])}  max {_fmt(lag['max'])}")
        print(
            f"  dropped by generator    {ol['dropped_by_generator']} (at {ol['max_outstanding_per_client']}"
            f" outstanding per client; peak {ol['peak_outstanding_per_client']})"
            f"  not emitted (client stopped) {ol['not_emitted_client_stopped']}"
        )
    print()
    rejections = ", ".join(f"{k} {v}" for k, v in sorted(s["rejections"].items())) or "none"
    print(f"  rejections              {rejections}")
    odd = {k: v for k, v in s["outcomes"].items() if k not in ("accepted", "rejected")}
    if odd:
        print(f"  other send outcomes     {', '.join(f'{k} {v}' for k, v in sorted(odd.items()))}")
    if s["events"]:
        print(f"  events                  {', '.join(f'{k} {v}' for k, v in sorted(s['events'].items()))}")
    print()
    print(f"  lost (never delivered)  {integ['lost']}")
    db = s["database"]
    if integ["lost"] and db is not None:
        by_status = ", ".join(f"{k} {v}" for k, v in sorted(db["lost_by_inbox_status"].items()))
        print(f"    by inbox status       {by_status}")
        if db["lost_by_inbox_status"].get("absent"):
            print(
                "    'absent': RabbitMQ confirmed the command but this deployment's workers never applied it"
                " (still queued, or taken by another consumer of the same queue/vhost)"
            )
    print(f"  incomplete fan-out      {integ['incomplete_fanout']}")
    print(f"  duplicated (raw, same socket)  {integ['raw_duplicates']}")
    for key in ("delivered_without_ack", "word_count_mismatches", "budget_stops", "foreign_messages"):
        if integ[key]:
            print(f"  {key.replace('_', ' '):<24}{integ[key]}")
    if db is None:
        print(f"  database check          unavailable ({s.get('database_error')})")
    else:
        print(
            f"  stored messages         {db['rows']} rows, {db['distinct']} distinct"
            f" (stored twice {db['stored_twice']}, stored not delivered {db['stored_not_delivered']},"
            f" delivered not stored {db['delivered_not_stored']})"
        )
    print()
    print(
        f"  credits charged         {led['charged']} (expected {led['expected_charged']} by replaying"
        f" charge_words; ledger charge postings {'-' if db is None else db['charge_postings']})"
    )
    print(f"  users checked           {led['users']}, mismatched {led['mismatched_users']}")
    if led.get("stats_error"):
        print(f"  credit stats            unavailable ({led['stats_error']})")
    for m in led["mismatch_sample"]:
        print(f"    {m['userId']}: expected {m['expected']} actual {m['actual']}")
    if led["replay_blocked"]:
        print(f"  replay blocked          {led['replay_blocked']} (the grant did not cover every message)")
    print()
    print("LEDGER OK" if led["ok"] else "LEDGER MISMATCH")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings()
    if count_words(message_text(args.words)) != args.words:
        raise SystemExit("internal error: the generated message does not have --words words")
    event_loop.install(settings.event_loop)  # a lighter generator leaves more of a shared box to the server
    try:
        return asyncio.run(LoadTest(args, settings).run())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
