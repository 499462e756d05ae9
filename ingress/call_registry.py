"""Call signaling state in Redis, shared by every ingress node.

- Who is online: each node keeps its users in memory and mirrors them in its own
  ``<prefix>:node:<node>:users`` set (see infra.presence_store), which expires unless the node's
  heartbeat renews it; a user is online while a live node lists them. When a user's last socket
  on a node closes, the node records when (``<prefix>:seen:<user>``): the billing sweeper ends the
  calls of a party who stays away longer than ``CALL_DISCONNECT_GRACE_S``. Disconnects change
  memory at once and reach Redis through a background flusher, so they never fail.
- Each call: ``<prefix>:call:<callId>`` holds ``{caller, callee, callerName, state}`` with a TTL
  (``CALL_RING_TIMEOUT_S`` while ringing, ``CALL_STATE_TTL_S`` once its meter runs). A call started
  with ``callStart`` is recorded ``active`` at once. State changes are compare-and-set, so two
  nodes racing (accept vs. cancel) cannot both win, and a call has one meter.
- ``<prefix>:ringing:<caller>``: the caller's call still ringing (one at a time).
- ``<prefix>:call:<callId>:beat``: a caller's heartbeat reached billing within the interval.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from typing import Literal, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from infra import presence_store
from infra.presence_store import HEARTBEAT_S, NODE_TTL_S, SEEN_TTL_S
from infra.redis_flusher import RedisFlusher
from schemas.calls import signaling_key

CallState = Literal["ringing", "active"]

# Replace the value only if it is still what the caller read (KEYS[1]; ARGV: old, new, ttl; ttl 0 = delete).
_CAS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) == 0 then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""

# Ring a new call unless the caller already has another one ringing.
# KEYS: the call, the caller's ringing marker. ARGV: the call, its id, ring ttl, the prefix of call keys.
# Returns {"busy", ms left} | {"new", call} | {"existing", stored call}.
_RING = """
local ringing = redis.call('GET', KEYS[2])
if ringing and ringing ~= ARGV[2] then
  local other = redis.call('GET', ARGV[4] .. ringing)
  if other and cjson.decode(other)['state'] == 'ringing' then
    return {'busy', tostring(math.max(redis.call('PTTL', ARGV[4] .. ringing), 1))}
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3], 'NX') then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  return {'new', ARGV[1]}
end
return {'existing', redis.call('GET', KEYS[1])}
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


@dataclass(frozen=True, slots=True)
class RingOutcome:
    call: SignaledCall | None  # what is stored under the id (None when the caller is busy)
    busy_ms: int = 0  # > 0: the caller's previous call still rings this long


class CallRegistry:
    def __init__(self, redis: Redis, prefix: str, node_id: str, ring_ttl_s: int, state_ttl_s: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._node_id = node_id
        self._ring_ttl_s = ring_ttl_s
        self._state_ttl_s = state_ttl_s
        self._cas = redis.register_script(_CAS)
        self._ring = redis.register_script(_RING)
        self._sockets: dict[str, set[str]] = {}  # user -> this node's sids
        self._flusher = RedisFlusher(redis, f"calls:{node_id}", renew=self._renew, renew_every_s=HEARTBEAT_S)

    def _call_key(self, call_id: str) -> str:
        return signaling_key(self._prefix, call_id)

    @property
    def _users_key(self) -> str:
        return presence_store.node_users_key(self._prefix, self._node_id)

    # --- online users -------------------------------------------------------------
    def _renew(self, pipe: Pipeline) -> None:
        """Every heartbeat: keep this node's users set alive, and every user of the node in it (cheap,
        and it heals a write that raced another or a set that lapsed while Redis was out of reach)."""
        if self._sockets:
            pipe.sadd(self._users_key, *self._sockets)
        pipe.expire(self._users_key, NODE_TTL_S)

    def _user_writer(self, user_id: str, seen_ms: int | None = None):
        def write(pipe: Pipeline) -> None:
            if user_id in self._sockets:
                pipe.sadd(self._users_key, user_id)
                pipe.expire(self._users_key, NODE_TTL_S)
            else:
                if seen_ms is not None:  # before leaving the set, so no reader sees "offline" without it
                    pipe.set(presence_store.seen_key(self._prefix, user_id), seen_ms, ex=SEEN_TTL_S)
                pipe.srem(self._users_key, user_id)

        return write

    async def connected(self, sid: str, user_id: str) -> None:
        """Record a socket; written to Redis at once if it can be, else soon (never raises)."""
        self._sockets.setdefault(user_id, set()).add(sid)
        await self._flusher.write_now(("user", user_id), self._user_writer(user_id))

    def disconnected(self, sid: str, user_id: str) -> None:
        """Forget a socket at once; Redis follows in the background."""
        sids = self._sockets.get(user_id)
        if sids is None or sid not in sids:
            return
        sids.discard(sid)
        if not sids:
            del self._sockets[user_id]
            self._flusher.mark(("user", user_id), self._user_writer(user_id, int(time.time() * 1000)))

    async def is_online(self, user_id: str) -> bool:
        if user_id in self._sockets:
            return True
        return user_id in await presence_store.online_users(self._redis, self._prefix, [user_id])

    async def close(self) -> None:
        await self._flusher.stop()

    # --- calls --------------------------------------------------------------------
    async def get(self, call_id: str) -> SignaledCall | None:
        raw = await self._redis.get(self._call_key(call_id))
        return None if raw is None else SignaledCall(**json.loads(raw))

    async def ring(self, call_id: str, call: SignaledCall) -> RingOutcome:
        """Record a new ringing call, unless its caller has another one ringing.

        Returns what is stored under ``call_id`` (an existing call keeps its parties).
        """
        ringing_key = f"{self._prefix}:ringing:{call.caller}"
        kind, value = await self._ring(
            keys=[self._call_key(call_id), ringing_key],
            args=[call.encode(), call_id, self._ring_ttl_s, self._call_key("")],
        )
        if kind == "busy":
            return RingOutcome(None, int(value))
        return RingOutcome(SignaledCall(**json.loads(value)))

    async def ringing_ms(self, caller: str) -> int:
        """How long the caller's call that still rings has left to ring (0: none rings)."""
        # The client decodes responses (redis_client's default); redis-py types values bytes | str.
        call_id = cast("str | None", await self._redis.get(f"{self._prefix}:ringing:{caller}"))
        if call_id is None or (call := await self.get(call_id)) is None or call.state != "ringing":
            return 0
        return max(int(await self._redis.pttl(self._call_key(call_id))), 1)

    async def start_metered(self, call_id: str, call: SignaledCall) -> tuple[SignaledCall, bool]:
        """Record a call whose meter starts now (``callStart``); returns what is stored and whether it is new."""
        if await self._redis.set(self._call_key(call_id), call.encode(), ex=self._state_ttl_s, nx=True):
            return call, True
        existing = await self.get(call_id)
        return (existing, False) if existing is not None else await self.start_metered(call_id, call)

    async def transition(self, call_id: str, old: SignaledCall, new_state: CallState | None) -> bool:
        """Move ``old`` to ``new_state`` (None forgets the call); False if someone changed it first."""
        new = "" if new_state is None else replace(old, state=new_state).encode()
        ttl = 0 if new_state is None else self._state_ttl_s if new_state == "active" else self._ring_ttl_s
        return bool(await self._cas(keys=[self._call_key(call_id)], args=[old.encode(), new, ttl]))

    async def keep_alive(self, call_id: str) -> None:
        await self._redis.expire(self._call_key(call_id), self._state_ttl_s)

    async def claim_beat(self, call_id: str, interval_ms: int) -> bool:
        """True for the first heartbeat of a call in each interval: only that one reaches billing."""
        return bool(await self._redis.set(f"{self._call_key(call_id)}:beat", "1", px=interval_ms, nx=True))

    async def release_beat(self, call_id: str) -> None:
        """The claimed heartbeat could not be sent: let the next one try."""
        await self._redis.delete(f"{self._call_key(call_id)}:beat")
