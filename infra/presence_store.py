"""Who is connected where, as ingress nodes record it in Redis, and how anyone reads it.

Every key a node writes is its own and expires unless the node's heartbeat renews it, so a
crashed node (or a cleanup that never reached Redis) cannot leave anyone "online" for longer
than ``NODE_TTL_S``:

- ``<prefix>:node:<node>``: the node's state ``{connections, rooms, ts}``; a node is *live* while
  this key exists. ``<prefix>:nodes`` lists the nodes (dead ones are pruned by readers).
- ``<prefix>:node:<node>:rooms``: the rooms the node has members in.
- ``<prefix>:room:<room>:members:<node>``: ``sid -> user`` of the node's sockets in a room.
- ``<prefix>:node:<node>:users``: the users with at least one socket on the node.
- ``<prefix>:seen:<user>``: when (epoch ms) a node last saw the user's last socket there close.

Readers only trust keys of live nodes. Ingress writes them (ingress.presence, ingress.call_registry);
the billing sweeper reads who is online to end the calls of parties who dropped off.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, cast

from redis.asyncio import Redis

HEARTBEAT_S = 5
NODE_TTL_S = 15
SEEN_TTL_S = 86_400


def nodes_key(prefix: str) -> str:
    return f"{prefix}:nodes"


def node_key(prefix: str, node: str) -> str:
    return f"{prefix}:node:{node}"


def node_rooms_key(prefix: str, node: str) -> str:
    return f"{prefix}:node:{node}:rooms"


def node_users_key(prefix: str, node: str) -> str:
    return f"{prefix}:node:{node}:users"


def members_key(prefix: str, room_id: str, node: str) -> str:
    return f"{prefix}:room:{room_id}:members:{node}"


def seen_key(prefix: str, user_id: str) -> str:
    return f"{prefix}:seen:{user_id}"


async def live_nodes(redis: Redis, prefix: str) -> dict[str, dict[str, Any]]:
    """The live nodes and their last reported state; forgets nodes whose heartbeat lapsed."""
    # Every client here decodes responses (redis_client's default); redis-py types members bytes | str.
    nodes = sorted(cast("set[str]", await redis.smembers(nodes_key(prefix))))
    if not nodes:
        return {}
    states = await redis.mget([node_key(prefix, n) for n in nodes])
    live = {n: json.loads(s) for n, s in zip(nodes, states, strict=True) if s is not None}
    if dead := [n for n in nodes if n not in live]:
        await redis.srem(nodes_key(prefix), *dead)
    return live


async def online_users(redis: Redis, prefix: str, users: Iterable[str], live: Iterable[str] | None = None) -> set[str]:
    """Which of ``users`` have a socket on a live node (``live``: the live nodes, if just read)."""
    wanted = sorted(set(users))
    live = sorted(await live_nodes(redis, prefix) if live is None else live)
    if not wanted or not live:
        return set()
    pipe = redis.pipeline(transaction=False)
    for node in live:
        pipe.smismember(node_users_key(prefix, node), wanted)
    online: set[str] = set()
    for flags in await pipe.execute():
        online.update(u for u, flag in zip(wanted, flags, strict=True) if flag)
    return online


async def last_seen_ms(redis: Redis, prefix: str, users: Iterable[str]) -> dict[str, int | None]:
    """When each user's last socket closed (on whichever node wrote last); None if no node recorded it."""
    wanted = sorted(set(users))
    if not wanted:
        return {}
    values = await redis.mget([seen_key(prefix, u) for u in wanted])
    return {u: None if v is None else int(v) for u, v in zip(wanted, values, strict=True)}
