"""How many Socket.IO connections each user and each client IP holds on this node.

Counted in this process only: a node's own sockets are exactly known, a disconnect needs no
network call, and a crashed node leaves nothing behind. The price: with N nodes behind a
balancer a user can hold up to N times the cap.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Refusal:
    scope: str  # "user" or "ip"
    limit: int


class ConnectionCaps:
    def __init__(self, per_user: int, per_ip: int) -> None:
        self._per_user = per_user
        self._per_ip = per_ip
        self._users: Counter[str] = Counter()
        self._ips: Counter[str] = Counter()
        self._holders: dict[str, tuple[str, str]] = {}  # sid -> (user, ip)

    def admit(self, sid: str, user_id: str, ip: str) -> Refusal | None:
        """Count ``sid`` unless its user or IP is at the cap (then nothing is counted)."""
        if sid in self._holders:
            return None
        if self._users[user_id] >= self._per_user:
            return Refusal("user", self._per_user)
        if self._ips[ip] >= self._per_ip:
            return Refusal("ip", self._per_ip)
        self._users[user_id] += 1
        self._ips[ip] += 1
        self._holders[sid] = (user_id, ip)
        return None

    def release(self, sid: str) -> str | None:
        """Forget ``sid`` (once; unknown sids are ignored); returns its user."""
        held = self._holders.pop(sid, None)
        if held is None:
            return None
        user_id, ip = held
        for counter, key in ((self._users, user_id), (self._ips, ip)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
        return user_id

    def held(self, user_id: str | None = None, ip: str | None = None) -> int:
        return self._users[user_id] if user_id is not None else self._ips[ip] if ip is not None else len(self._holders)
