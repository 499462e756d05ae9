"""Issue 12: a thousand sockets of one user closing at once (finding: the Redis pool ran dry, ~700
disconnect handlers failed with MaxConnectionsError and left phantom presence until a restart).

Raw websockets speak Engine.IO/Socket.IO by hand: python-socketio clients are too slow to open a
thousand of. The node is a dedicated one, its per-user and per-IP connection caps raised.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
from redis.asyncio import Redis

from infra import presence_store
from tests.support.clients import ChatClient, make_token

SOCKETS = 1000


def uid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


class RawSocket:
    """One Socket.IO connection over a bare websocket; answers the server's pings."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._pinger: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, session: aiohttp.ClientSession, port: int, token: str, room_id: str) -> RawSocket:
        ws = await session.ws_connect(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
        opened = await ws.receive_str(timeout=30)
        assert opened.startswith("0{"), opened
        await ws.send_str("40" + json.dumps({"token": token}))
        connected = await ws.receive_str(timeout=30)
        assert connected.startswith("40{"), connected
        await ws.send_str("421" + json.dumps(["joinRoom", {"roomId": room_id}]))
        while not (frame := await ws.receive_str(timeout=30)).startswith("431"):
            if frame == "2":
                await ws.send_str("3")
        assert json.loads(frame[3:])[0]["status"] == "accepted", frame
        sock = cls(ws)
        sock._pinger = asyncio.create_task(sock._pong())
        return sock

    async def _pong(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "2":
                await self.ws.send_str("3")

    async def close(self) -> None:
        await self.ws.close()
        if self._pinger is not None:
            self._pinger.cancel()


async def node_state(redis: Redis, prefix: str, node_id: str) -> dict:
    raw = await redis.get(presence_store.node_key(prefix, node_id))
    return json.loads(raw) if raw else {}


async def test_a_thousand_sockets_of_one_user_closing_at_once(stack, settings, http, clients):
    node = stack.processes.ingress(
        SOCKET_MAX_PER_USER=str(SOCKETS * 2), SOCKET_MAX_PER_IP=str(SOCKETS * 5), USER_JOIN_LIMITS="100000/1s"
    )
    node_id, prefix = f"node-{node.port}", settings.key_prefix
    redis = Redis.from_url(settings.effective_redis_url, decode_responses=True)
    user = uid("burst")
    token = make_token(user)
    rooms = [uid(f"burst{i}") for i in range(SOCKETS)]
    try:
        bystander = ChatClient(uid("bystander"))
        clients.append(bystander)
        await bystander.connect(node.port)
        lobby = uid("lobby")
        await bystander.join(lobby)
        gate = asyncio.Semaphore(100)

        async def open_one(session: aiohttp.ClientSession, room_id: str) -> RawSocket:
            async with gate:
                return await RawSocket.open(session, node.port, token, room_id)

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:  # no cap on sockets
            started = time.monotonic()
            sockets = await asyncio.gather(*(open_one(session, r) for r in rooms))
            opened_s = time.monotonic() - started
            deadline = time.monotonic() + 20
            while (await node_state(redis, prefix, node_id)).get("connections") != SOCKETS + 1:
                assert time.monotonic() < deadline, await node_state(redis, prefix, node_id)
                await asyncio.sleep(0.2)
            users_key = presence_store.node_users_key(prefix, node_id)
            assert await redis.sismember(users_key, user)
            assert await redis.hlen(presence_store.members_key(prefix, rooms[0], node_id)) == 1

            # All at once, and a bystander sends meanwhile.
            started = time.monotonic()
            closing = asyncio.gather(*(s.close() for s in sockets))
            ack = await bystander.send(lobby, "hello during the burst", clientMessageId=uid("m"))
            await closing
            closed_s = time.monotonic() - started
            assert ack["status"] == "accepted", ack

            deadline = time.monotonic() + 30
            while True:
                state = await node_state(redis, prefix, node_id)
                async with http.get(f"http://127.0.0.1:{node.port}/api/chat/stats") as resp:
                    stats = await resp.json()
                leftover = await redis.exists(*(presence_store.members_key(prefix, r, node_id) for r in rooms))
                live = await presence_store.live_nodes(redis, prefix)
                elsewhere = sum(int(s["connections"]) for n, s in live.items() if n != node_id)
                settled = state.get("connections") == 1 and stats["connections"] == 1 + elsewhere
                if settled and not await redis.sismember(users_key, user) and not leftover:
                    break
                assert time.monotonic() < deadline, (state, stats, leftover)
                await asyncio.sleep(0.2)
            settled_s = time.monotonic() - started
        node_rooms = await redis.smembers(presence_store.node_rooms_key(prefix, node_id))
        assert node_rooms == {lobby}, len(node_rooms)
        assert (await redis.hvals(presence_store.members_key(prefix, lobby, node_id))) == [bystander.user_id]
        log = node.log()
        for bad in ("socket.handler_failed", "MaxConnectionsError", "Too many connections", "redis_flusher.failed"):
            assert bad not in log, bad
        assert log.count('"socket.connected"') >= SOCKETS + 1
        print(
            f"{SOCKETS} sockets opened in {opened_s:.1f}s, closed in {closed_s:.2f}s; "
            f"presence back to the truth {settled_s:.2f}s after the burst began"
        )
    finally:
        await redis.aclose()
        node.terminate()
