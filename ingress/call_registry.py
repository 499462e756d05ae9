"""Call signaling state in Redis, shared by every ingress node.

- Who is online: ``<prefix>:online:<user>`` is a hash of ``node/sid`` fields, one per socket.
  Fields of nodes whose presence heartbeat (``<prefix>:node:<node>``, see ingress.presence)
  has lapsed are ignored and pruned, so a crashed node never keeps its users "online".
- Each signaled call: ``<prefix>:call:<callId>`` holds ``{caller, callee, callerName, state}``
  with a TTL (``CALL_RING_TIMEOUT_S`` while ringing, ``CALL_STATE_TTL_S`` once accepted).
  State changes are compare-and-set, so two nodes racing (accept vs. cancel) cannot both win.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Literal

from redis.asyncio import Redis

from schemas.calls import signaling_key

CallState = Literal["ringing", "active"]

# Replace the value only if it is still what the caller read (KEYS[1]; ARGV: old, new, ttl; ttl 0 = delete).
_CAS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) == 0 then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""


@dataclass(frozen=True, slots=True)
class SignaledCall:
    caller: str
    callee: str
    caller_name: str
    state: CallState

    def other(self, user_id: str) -> str | None:
        """The other party, or None if ``user_id`` is not a party."""
        if user_id == self.caller:
            return self.callee
        if user_id == self.callee:
            return self.caller
        return None

    def encode(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class CallRegistry:
    def __init__(self, redis: Redis, prefix: str, node_id: str, ring_ttl_s: int, state_ttl_s: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._node_id = node_id
        self._ring_ttl_s = ring_ttl_s
        self._state_ttl_s = state_ttl_s
        self._cas = redis.register_script(_CAS)

    def _online_key(self, user_id: str) -> str:
        return f"{self._prefix}:online:{user_id}"

    def _call_key(self, call_id: str) -> str:
        return signaling_key(self._prefix, call_id)

    def _node_key(self, node: str) -> str:
        return f"{self._prefix}:node:{node}"  # written by ingress.presence

    # --- online users -------------------------------------------------------------
    async def connected(self, sid: str, user_id: str) -> None:
        await self._redis.hset(self._online_key(user_id), f"{self._node_id}/{sid}", "1")

    async def disconnected(self, sid: str, user_id: str) -> None:
        await self._redis.hdel(self._online_key(user_id), f"{self._node_id}/{sid}")

    async def is_online(self, user_id: str) -> bool:
        fields = await self._redis.hkeys(self._online_key(user_id))
        if not fields:
            return False
        nodes = sorted({f.split("/", 1)[0] for f in fields})
        alive = await self._redis.mget([self._node_key(n) for n in nodes])
        live = {n for n, state in zip(nodes, alive, strict=True) if state is not None}
        stale = [f for f in fields if f.split("/", 1)[0] not in live]
        if stale:
            await self._redis.hdel(self._online_key(user_id), *stale)
        return len(stale) < len(fields)

    # --- calls --------------------------------------------------------------------
    async def get(self, call_id: str) -> SignaledCall | None:
        raw = await self._redis.get(self._call_key(call_id))
        return None if raw is None else SignaledCall(**json.loads(raw))

    async def ring(self, call_id: str, call: SignaledCall) -> SignaledCall:
        """Record a new ringing call; returns what is stored (an existing call keeps its parties)."""
        if await self._redis.set(self._call_key(call_id), call.encode(), ex=self._ring_ttl_s, nx=True):
            return call
        existing = await self.get(call_id)
        return existing if existing is not None else await self.ring(call_id, call)

    async def transition(self, call_id: str, old: SignaledCall, new_state: CallState | None) -> bool:
        """Move ``old`` to ``new_state`` (None forgets the call); False if someone changed it first."""
        new = "" if new_state is None else replace(old, state=new_state).encode()
        ttl = 0 if new_state is None else self._state_ttl_s if new_state == "active" else self._ring_ttl_s
        return bool(await self._cas(keys=[self._call_key(call_id)], args=[old.encode(), new, ttl]))

    async def keep_alive(self, call_id: str) -> None:
        await self._redis.expire(self._call_key(call_id), self._state_ttl_s)
