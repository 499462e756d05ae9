"""Who is connected where, shared by all ingress nodes through Redis.

Each node owns a heartbeat key (with a TTL) holding its connection count and a
set of the rooms it has members in. Room membership is a hash of
``node/sid -> user``; entries of nodes whose heartbeat has lapsed are ignored
and pruned, so a crashed node never inflates counts for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import structlog
from redis.asyncio import Redis

log = structlog.get_logger(__name__)

HEARTBEAT_S = 5
NODE_TTL_S = 15


class Presence:
    def __init__(self, redis: Redis, prefix: str, node_id: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self.node_id = node_id
        self._connections: set[str] = set()
        self._rooms: dict[str, set[str]] = {}  # room -> local sids
        self._task: asyncio.Task[None] | None = None

    # --- keys -------------------------------------------------------------------
    def _node_key(self, node: str) -> str:
        return f"{self._prefix}:node:{node}"

    def _node_rooms_key(self, node: str) -> str:
        return f"{self._prefix}:node:{node}:rooms"

    def _members_key(self, room_id: str) -> str:
        return f"{self._prefix}:room:{room_id}:members"

    @property
    def _nodes_key(self) -> str:
        return f"{self._prefix}:nodes"

    # --- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        await self._beat()
        self._task = asyncio.create_task(self._heartbeat_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            pipe = self._redis.pipeline()
            for room_id, sids in self._rooms.items():
                pipe.hdel(self._members_key(room_id), *[self._field(s) for s in sids])
            pipe.delete(self._node_key(self.node_id), self._node_rooms_key(self.node_id))
            pipe.srem(self._nodes_key, self.node_id)
            await pipe.execute()

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._beat()
            except Exception as exc:  # Redis blips must not kill the node
                log.warning("presence.heartbeat_failed", error=repr(exc))

    async def _beat(self) -> None:
        state = {"connections": len(self._connections), "rooms": len(self._rooms), "ts": time.time()}
        pipe = self._redis.pipeline()
        pipe.set(self._node_key(self.node_id), json.dumps(state), ex=NODE_TTL_S)
        pipe.sadd(self._nodes_key, self.node_id)
        if self._rooms:
            pipe.sadd(self._node_rooms_key(self.node_id), *self._rooms)
        pipe.expire(self._node_rooms_key(self.node_id), NODE_TTL_S)
        await pipe.execute()

    # --- membership -------------------------------------------------------------
    def _field(self, sid: str) -> str:
        return f"{self.node_id}/{sid}"

    def connected(self, sid: str) -> None:
        self._connections.add(sid)

    async def disconnected(self, sid: str) -> list[str]:
        """Forget a socket; returns the rooms it was in."""
        self._connections.discard(sid)
        rooms = [room for room, sids in self._rooms.items() if sid in sids]
        for room_id in rooms:
            await self.left(sid, room_id)
        return rooms

    def is_member(self, sid: str, room_id: str) -> bool:
        return sid in self._rooms.get(room_id, ())

    async def joined(self, sid: str, user_id: str, room_id: str) -> int:
        """Record a join and return the room's member count (distinct users, all nodes)."""
        self._rooms.setdefault(room_id, set()).add(sid)
        pipe = self._redis.pipeline()
        pipe.hset(self._members_key(room_id), self._field(sid), user_id)
        pipe.sadd(self._node_rooms_key(self.node_id), room_id)
        pipe.expire(self._node_rooms_key(self.node_id), NODE_TTL_S)
        await pipe.execute()
        return await self.member_count(room_id)

    async def left(self, sid: str, room_id: str) -> None:
        sids = self._rooms.get(room_id)
        if sids is None or sid not in sids:
            return
        sids.discard(sid)
        pipe = self._redis.pipeline()
        pipe.hdel(self._members_key(room_id), self._field(sid))
        if not sids:
            del self._rooms[room_id]
            pipe.srem(self._node_rooms_key(self.node_id), room_id)
        await pipe.execute()

    async def _live_nodes(self) -> dict[str, dict]:
        nodes = sorted(await self._redis.smembers(self._nodes_key))
        if not nodes:
            return {}
        states = await self._redis.mget([self._node_key(n) for n in nodes])
        live = {n: json.loads(s) for n, s in zip(nodes, states, strict=True) if s is not None}
        dead = [n for n in nodes if n not in live]
        if dead:
            await self._redis.srem(self._nodes_key, *dead)
        return live

    async def member_count(self, room_id: str) -> int:
        members = await self._redis.hgetall(self._members_key(room_id))
        live = await self._live_nodes()
        stale = [f for f in members if f.split("/", 1)[0] not in live]
        if stale:
            await self._redis.hdel(self._members_key(room_id), *stale)
        return len({user for field, user in members.items() if field not in stale})

    async def cluster_stats(self) -> dict[str, int]:
        live = await self._live_nodes()
        rooms = await self._redis.sunion([self._node_rooms_key(n) for n in live]) if live else set()
        return {"connections": sum(s["connections"] for s in live.values()), "rooms": len(rooms)}
