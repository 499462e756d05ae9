"""Who is connected where, shared by all ingress nodes through Redis (keys: infra.presence_store).

This node's own sockets and room memberships are kept in memory, which is the truth; Redis holds
a copy for the other nodes. A disconnect or a leave changes memory at once and never waits for
Redis: the copy is brought up to date by a background :class:`~infra.redis_flusher.RedisFlusher`
(batched, retried), so a burst of disconnects cannot exhaust the Redis pool or fail a handler.
Every key the node writes expires ``NODE_TTL_S`` after its last heartbeat, so neither a crashed
node nor a cleanup that never reached Redis leaves members behind for longer than that.
"""

from __future__ import annotations

import json
import time

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from infra import presence_store as keys
from infra.presence_store import HEARTBEAT_S, NODE_TTL_S
from infra.redis_flusher import RedisFlusher

log = structlog.get_logger(__name__)

__all__ = ["HEARTBEAT_S", "NODE_TTL_S", "Presence"]


class Presence:
    def __init__(self, redis: Redis, prefix: str, node_id: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self.node_id = node_id
        self._connections: set[str] = set()
        self._rooms: dict[str, dict[str, str]] = {}  # room -> {local sid: user}
        self._socket_rooms: dict[str, set[str]] = {}  # local sid -> rooms
        self._flusher = RedisFlusher(redis, f"presence:{node_id}", renew=self._beat_commands, renew_every_s=HEARTBEAT_S)

    # --- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        self._beat_commands(pipe)
        await pipe.execute()  # a node that cannot reach Redis at start-up does not start
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()
        try:
            pipe = self._redis.pipeline(transaction=False)
            for room_id in self._rooms:
                pipe.delete(keys.members_key(self._prefix, room_id, self.node_id))
            pipe.delete(
                keys.node_key(self._prefix, self.node_id),
                keys.node_rooms_key(self._prefix, self.node_id),
                keys.node_users_key(self._prefix, self.node_id),  # ingress.call_registry's; the node is gone
            )
            pipe.srem(keys.nodes_key(self._prefix), self.node_id)
            await pipe.execute()
        except Exception as exc:  # its keys expire on their own
            log.warning("presence.stop_cleanup_failed", error=repr(exc))

    @property
    def pending_writes(self) -> int:
        return self._flusher.pending

    def _state(self) -> str:
        return json.dumps({"connections": len(self._connections), "rooms": len(self._rooms), "ts": time.time()})

    def _beat_commands(self, pipe: Pipeline) -> None:
        """The heartbeat: this node's state, and a renewed TTL on every key it owns."""
        pipe.set(keys.node_key(self._prefix, self.node_id), self._state(), ex=NODE_TTL_S)
        pipe.sadd(keys.nodes_key(self._prefix), self.node_id)
        rooms_key = keys.node_rooms_key(self._prefix, self.node_id)
        if self._rooms:
            pipe.sadd(rooms_key, *self._rooms)
        pipe.expire(rooms_key, NODE_TTL_S)
        lapsed = self._flusher.renewal_lapsed(NODE_TTL_S)  # Redis was out of reach: write it all again
        for room_id, members in self._rooms.items():
            members_key = keys.members_key(self._prefix, room_id, self.node_id)
            if lapsed:
                # redis-py types mapping as a Mapping keyed by a union of types; Mapping is invariant in
                # its key, so no dict[str, str] fits.
                pipe.hset(members_key, mapping=members)  # type: ignore[arg-type]
            pipe.expire(members_key, NODE_TTL_S)

    def _state_commands(self, pipe: Pipeline) -> None:
        pipe.set(keys.node_key(self._prefix, self.node_id), self._state(), ex=NODE_TTL_S)

    # --- what Redis should say about one membership, as memory says it now ---------
    def _membership_writer(self, sid: str, room_id: str):
        def write(pipe: Pipeline) -> None:
            members = keys.members_key(self._prefix, room_id, self.node_id)
            rooms_key = keys.node_rooms_key(self._prefix, self.node_id)
            user = self._rooms.get(room_id, {}).get(sid)
            if user is not None:
                pipe.hset(members, sid, user)
                pipe.expire(members, NODE_TTL_S)
                pipe.sadd(rooms_key, room_id)
                pipe.expire(rooms_key, NODE_TTL_S)
            else:
                pipe.hdel(members, sid)
                if room_id not in self._rooms:
                    pipe.srem(rooms_key, room_id)

        return write

    # --- membership -------------------------------------------------------------
    def connected(self, sid: str) -> None:
        self._connections.add(sid)
        self._flusher.mark(("state",), self._state_commands)

    def disconnected(self, sid: str) -> list[str]:
        """Forget a socket at once (Redis follows in the background); returns the rooms it was in."""
        self._connections.discard(sid)
        rooms = sorted(self._socket_rooms.get(sid, ()))
        for room_id in rooms:
            self._forget(sid, room_id)
        self._flusher.mark(("state",), self._state_commands)
        return rooms

    def is_member(self, sid: str, room_id: str) -> bool:
        return sid in self._rooms.get(room_id, ())

    def rooms_of(self, sid: str) -> frozenset[str]:
        return frozenset(self._socket_rooms.get(sid, ()))

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def joined(self, sid: str, user_id: str, room_id: str) -> int:
        """Record a join and return the room's member count (distinct users, all nodes)."""
        self._rooms.setdefault(room_id, {})[sid] = user_id
        self._socket_rooms.setdefault(sid, set()).add(room_id)
        await self._flusher.write_now(("member", room_id, sid), self._membership_writer(sid, room_id))
        return await self.member_count(room_id)

    async def left(self, sid: str, room_id: str) -> None:
        """Forget one membership at once; Redis follows in the background (this never fails)."""
        self._forget(sid, room_id)

    def _forget(self, sid: str, room_id: str) -> None:
        members = self._rooms.get(room_id)
        if members is None or sid not in members:
            return
        del members[sid]
        if not members:
            del self._rooms[room_id]
        if (rooms := self._socket_rooms.get(sid)) is not None:
            rooms.discard(room_id)
            if not rooms:
                del self._socket_rooms[sid]
        self._flusher.mark(("member", room_id, sid), self._membership_writer(sid, room_id))

    async def member_count(self, room_id: str) -> int:
        live = sorted(await keys.live_nodes(self._redis, self._prefix))
        users = set(self._rooms.get(room_id, {}).values())  # this node's own members: memory is the truth
        others = [n for n in live if n != self.node_id]
        if others:
            pipe = self._redis.pipeline(transaction=False)
            for node in others:
                pipe.hvals(keys.members_key(self._prefix, room_id, node))
            for values in await pipe.execute():
                users.update(values)
        return len(users)

    async def cluster_stats(self) -> dict[str, int]:
        live = await keys.live_nodes(self._redis, self._prefix)
        live[self.node_id] = {"connections": len(self._connections)}  # this node's own count is never stale
        rooms_keys = [keys.node_rooms_key(self._prefix, n) for n in live if n != self.node_id]
        rooms = set(await self._redis.sunion(rooms_keys)) if rooms_keys else set()
        rooms.update(self._rooms)
        return {"connections": sum(int(s["connections"]) for s in live.values()), "rooms": len(rooms)}
