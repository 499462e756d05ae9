"""SIGTERM on an ingress node: it drains, its clients move to the other node, nothing is lost or doubled.

Two real ingress nodes stand behind a loopback TCP balancer (``tests/support/tcp_balancer.py``)
that sends each new connection to the first node still listening, as a balancer does once a
draining node has left its rotation. A Python client and the unchanged npm socket.io-client
(``tests/js/reconnecting_client.mjs``) connect through it, land on node A, and A is sent SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from ingress.app import init_app
from ingress.shutdown import DRAIN
from tests.support import isolation
from tests.support.admin_api import grant, stats
from tests.support.clients import ChatClient, make_token
from tests.support.ids import uid
from tests.support.node_js import node_or_fail
from tests.support.processes import Processes
from tests.support.stacks import OneNode
from tests.support.tcp_balancer import TcpBalancer

SHUTDOWN_TIMEOUT_S = 8
EXIT_SLACK_S = 5  # process start-up of the signal handler, interpreter exit; generous on a shared machine
SCRIPT = Path(__file__).resolve().parents[1] / "js" / "reconnecting_client.mjs"


def text(tag: str) -> str:
    """A 1000-word message: exactly one credit."""
    return tag + " w" * 999


@pytest.fixture
def two_nodes(iso, stack_env):
    """Nodes A and B and a chat pool, in a vhost of their own."""
    vhost = f"{iso.vhost}_drain"
    isolation.create_vhost(vhost)
    env = {
        **stack_env,
        "AMQP_URL": f"{isolation.AMQP_BASE}/{vhost}",
        "RATE_LIMITS": "200/1s",
        "SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
    }
    procs = Processes(env)
    try:
        a, b = procs.ingress(), procs.ingress()
        procs.workers("chat", processes=1, threads=4)
        yield a, b
    finally:
        procs.stop_all()
        isolation.delete_vhost(vhost)


class JsClient:
    """``reconnecting_client.mjs`` under Node: its JSON lines, and commands written to its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, url: str, token: str, room: str, **env: str) -> JsClient:
        proc = await asyncio.create_subprocess_exec(
            node_or_fail(),
            str(SCRIPT),
            url,
            env={**os.environ, "TOKEN": token, "ROOM": room, **env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"event": "stderr", "data": line.decode(errors="replace")})
            self._changed.set()

    def events(self, event: str, predicate: Callable[[Any], bool] = lambda _: True) -> list[Any]:
        return [line["data"] for line in self.lines if line["event"] == event and predicate(line["data"])]

    async def wait_count(
        self, event: str, count: int, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = 30
    ) -> list[Any]:
        try:
            async with asyncio.timeout(timeout):
                while len(found := self.events(event, predicate)) < count:
                    self._changed.clear()
                    await self._changed.wait()
                return found
        except TimeoutError:
            raise AssertionError(f"node client: {count}x {event!r} not seen; it printed:\n{self.lines}") from None

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.send({"quit": True})
            try:
                async with asyncio.timeout(10):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()  # our own child, by its pid
                await self.proc.wait()
        await self._reader


@pytest.fixture
async def balancer(two_nodes) -> AsyncIterator[TcpBalancer]:
    a, b = two_nodes
    async with TcpBalancer([a.port, b.port]) as lb:
        yield lb


async def health_while_draining(session: aiohttp.ClientSession, port: int) -> list[tuple[int, dict]]:
    """/health answers over the kept-alive connection until the node stops answering."""
    seen: list[tuple[int, dict]] = []
    while True:
        try:
            async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                seen.append((resp.status, await resp.json()))
        except (aiohttp.ClientError, OSError):
            return seen
        await asyncio.sleep(0.005)


async def test_sigterm_moves_clients_to_the_other_node_and_loses_nothing(
    two_nodes, balancer, settings, http, clients, ledger
):
    node_a, node_b = two_nodes
    b = OneNode(node_b.port)
    room = uid("room")
    sender = ChatClient(uid("sender"), reconnection=True)
    watcher = ChatClient(uid("watch"))  # connected to B directly: sees every delivery
    clients.extend([sender, watcher])
    js_user, poller_user = uid("js"), uid("poller")
    await grant(http, b, sender.user_id, 10, "g")
    await grant(http, b, js_user, 10, "g")
    await watcher.connect(node_b.port)
    await watcher.join(room)

    async def rejoin() -> None:  # what a client app does: join its rooms again on every connect
        await sender.sio.emit("joinRoom", {"roomId": room})

    sender.sio.on("connect", rejoin)
    await sender.connect(balancer.port)
    await sender.wait_for("roomJoined", lambda d: d["roomId"] == room)
    js = await JsClient.start(balancer.url, make_token(js_user, "Js"), room)
    # Another unchanged client that stays on long-polling: its transport is closed differently.
    poller = await JsClient.start(balancer.url, make_token(poller_user, "Poller"), room, TRANSPORTS="polling")
    try:
        await js.wait_count("roomJoined", 1)
        await poller.wait_count("roomJoined", 1)
        assert balancer.accepted[node_a.port] >= 2 and balancer.accepted[node_b.port] == 0, balancer.accepted

        health = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))  # one kept-alive connection
        async with health:
            async with health.get(f"http://127.0.0.1:{node_a.port}/health") as resp:
                assert resp.status == 200

            # A message sent just before the SIGTERM: accepted, delivered once, charged once.
            before = asyncio.create_task(sender.send(room, text("before"), clientMessageId="before"))
            await asyncio.sleep(0.001)  # the emit is on the wire
            signalled = time.monotonic()
            exit_code = asyncio.create_task(asyncio.to_thread(node_a.terminate, SHUTDOWN_TIMEOUT_S + EXIT_SLACK_S))
            health_seen = await health_while_draining(health, node_a.port)
            ack_before = await before
            code = await exit_code
        elapsed = time.monotonic() - signalled
        assert code == 0, f"exit {code} after {elapsed:.1f}s:\n{node_a.log()[-3000:]}"
        assert elapsed < SHUTDOWN_TIMEOUT_S + EXIT_SLACK_S
        assert ack_before["status"] == "accepted", ack_before
        log = node_a.log()
        assert "ingress.draining" in log and "ingress.clients_moved" in log and "ingress.stopped" in log, log[-3000:]
        assert "shutdown_timed_out" not in log
        # /health, while it still answered: up, then draining (503), never up again.
        statuses = [(status, body["status"]) for status, body in health_seen]
        print(f"node A answered /health {statuses} after SIGTERM; drained in {elapsed:.2f}s")
        assert set(statuses) <= {(200, "ok"), (503, "draining")}, statuses
        assert statuses == sorted(statuses), statuses  # no "ok" after "draining"

        # The clients were told, lost their transport (not a server-side disconnect) and came back via B.
        assert sender.events["serverShutdown"] == [{"reconnect": True}]
        await sender.wait_count("roomJoined", 2, lambda d: d["roomId"] == room)
        await js.wait_count("roomJoined", 2)
        assert js.events("serverShutdown") == [{"reconnect": True}]
        assert js.events("disconnect")[0] == {"reason": "transport close", "active": True}, js.lines
        assert len(js.events("connect")) == 2
        await poller.wait_count("roomJoined", 2)
        assert poller.events("serverShutdown") == [{"reconnect": True}]
        # "transport error" when its next poll found the session gone: socket.io-client reconnects after both.
        (gone, *_) = poller.events("disconnect")
        assert gone["reason"] in ("transport close", "transport error") and gone["active"] is True, poller.lines
        assert [c["transport"] for c in poller.events("connect")] == ["polling", "polling"]
        assert balancer.open_to(node_a.port) == 0 and balancer.open_to(node_b.port) >= 2

        # After the move: a send from each client is accepted, delivered once and charged once.
        ack_after = await sender.send(room, text("after"), clientMessageId="after")
        assert ack_after["status"] == "accepted", ack_after
        js.send({"send": {"roomId": room, "message": text("fromjs"), "clientMessageId": "js-after"}})
        (ack_js,) = await js.wait_count("ack", 1)
        assert ack_js["status"] == "accepted", ack_js
        ids = [ack_before["messageId"], ack_after["messageId"], ack_js["messageId"]]
        await watcher.wait_count("newMessage", 3, lambda m: m["messageId"] in ids)
        await js.wait_count("newMessage", 2, lambda m: m["messageId"] in ids[1:])
        await sender.wait_count("newMessage", 2, lambda m: m["messageId"] in ids[1:])
        await asyncio.sleep(1.0)  # room for a duplicate to show up
        assert sorted(m["messageId"] for m in watcher.events["newMessage"]) == sorted(ids)
        assert sorted(m["messageId"] for m in js.events("newMessage")) == sorted(ids[1:])
        await poller.wait_count("newMessage", 2, lambda m: m["messageId"] in ids[1:])
        assert sorted(m["messageId"] for m in poller.events("newMessage")) == sorted(ids[1:])

        # Presence: node A left nothing behind; the room's members are the three clients, all on B.
        redis = Redis.from_url(settings.effective_redis_url, decode_responses=True)
        async with redis:
            prefix = settings.key_prefix
            node_a_id, node_b_id = f"node-{node_a.port}", f"node-{node_b.port}"
            assert not await redis.exists(f"{prefix}:node:{node_a_id}", f"{prefix}:node:{node_a_id}:rooms")
            assert not await redis.sismember(f"{prefix}:nodes", node_a_id)
            assert not await redis.exists(
                f"{prefix}:room:{room}:members:{node_a_id}", f"{prefix}:node:{node_a_id}:users"
            )
            members = await redis.hgetall(f"{prefix}:room:{room}:members:{node_b_id}")  # sid -> user, per node
            everyone = [sender.user_id, watcher.user_id, js_user, poller_user]
            assert sorted(members.values()) == sorted(everyone), members
    finally:
        await js.close()
        await poller.close()

    for message_id in ids:
        assert await ledger.fetchval("SELECT count(*) FROM messages WHERE message_id = $1", uuid.UUID(message_id)) == 1
    assert (await stats(http, b, sender.user_id))["creditsChargedTotal"] == 2
    assert (await stats(http, b, js_user))["creditsChargedTotal"] == 1


async def test_a_draining_node_says_so_and_refuses_new_sessions(settings):
    """In process: the flag the SIGTERM handler sets, as a load balancer and a client see it."""
    app = init_app(settings.model_copy(update={"node_id": uid("inproc")}))
    async with TestClient(TestServer(app)) as client:
        deadline = time.monotonic() + 30
        while (resp := await client.get("/health")).status != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # RabbitMQ connects in the background
        assert resp.status == 200 and (await resp.json())["status"] == "ok", await resp.text()
        app[DRAIN].draining = True
        resp = await client.get("/health")
        assert resp.status == 503 and (await resp.json())["status"] == "draining"
        assert resp.headers.get("Connection", "").lower() == "close"
        handshake = await client.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert handshake.status == 503
        assert (await handshake.json())["error"]["code"] == "draining"
