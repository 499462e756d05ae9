"""Room messages reach each socket once and in ``seq`` order, whatever the result stream dropped.

Every stored room message has its room's next ``seq``. This node remembers, for each socket and
room it serves, the highest ``seq`` that socket has: the room's last ``seq`` when it joined (its
history holds everything up to it), then each message it was sent. A live ``newMessage`` is then

- at or below it: a copy the socket already has (a redelivered or replayed command's results, or a
  message also in its history), and is not sent again;
- the next one: sent;
- further on: the messages in between were lost on the way, or are late (another worker published
  them): they are read from PostgreSQL and sent first, in order, then this one.

When the node's Redis subscription was interrupted, whatever was published meanwhile is lost to
it: once subscribed again, every room it serves is read back from the lowest ``seq`` its sockets
have (:meth:`RoomSequencer.resync`). Clients written for the original server, which do not
dedupe, thus see each message once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

log = structlog.get_logger(__name__)

Recipient = tuple[str, str]  # (Socket.IO sid, Engine.IO sid)
Send = Callable[[dict[str, Any], list[Recipient]], Awaitable[None]]
Fetch = Callable[[str, int, int, int], Awaitable[list[dict[str, Any]]]]  # room, after, before, limit

BACKFILL_MAX = 1000  # messages read back for one gap; a larger one is left to the client (joinRoom sinceSeq)


class RoomCursors:
    """The highest ``seq`` each socket has of each room it is in (pure bookkeeping)."""

    def __init__(self) -> None:
        self._of: dict[str, dict[str, int]] = defaultdict(dict)  # sid -> room -> seq

    def joined(self, sid: str, room_id: str, seq: int) -> None:
        rooms = self._of[sid]
        rooms[room_id] = max(seq, rooms.get(room_id, 0))

    def left(self, sid: str, room_id: str) -> None:
        self._of.get(sid, {}).pop(room_id, None)

    def forget(self, sid: str) -> None:
        self._of.pop(sid, None)

    def get(self, sid: str, room_id: str) -> int | None:
        rooms = self._of.get(sid)
        return None if rooms is None else rooms.get(room_id)

    def sent(self, sid: str, room_id: str, seq: int) -> None:
        self._of[sid][room_id] = seq

    def rooms(self) -> set[str]:
        return {room for rooms in self._of.values() for room in rooms}


class RoomSequencer:
    """Sends a room's live messages to its sockets through the cursors, reading gaps back."""

    def __init__(self, fetch: Fetch) -> None:
        self.cursors = RoomCursors()
        self._fetch = fetch
        self.duplicates_dropped = 0
        self.backfilled = 0

    async def deliver(self, room_id: str, message: dict[str, Any], recipients: Sequence[Recipient], send: Send) -> None:
        seq = message["seq"]
        now: list[Recipient] = []
        behind: list[tuple[Recipient, int]] = []
        for recipient in recipients:
            have = self.cursors.get(recipient[0], room_id)
            if have is None or seq == have + 1:
                now.append(recipient)
            elif seq <= have:
                self.duplicates_dropped += 1
            else:
                behind.append((recipient, have))
        if now:
            await self._send(room_id, message, now, send)
        if behind:
            await self._catch_up(room_id, [r for r, _ in behind], min(h for _, h in behind), seq, send)
            await self._send(room_id, message, [r for r, _ in behind], send)

    async def resync(self, recipients_of: Callable[[str], Sequence[Recipient]], send: Send) -> None:
        """After an interrupted subscription: every room's messages after its sockets' lowest seq."""
        for room_id in sorted(self.cursors.rooms()):
            recipients = [r for r in recipients_of(room_id) if self.cursors.get(r[0], room_id) is not None]
            if recipients:
                low = min(self.cursors.get(sid, room_id) or 0 for sid, _ in recipients)
                await self._catch_up(room_id, recipients, low, None, send)

    async def _catch_up(
        self, room_id: str, recipients: list[Recipient], after: int, before: int | None, send: Send
    ) -> None:
        """Send each recipient the stored messages in (after, before) it does not have, in order."""
        try:
            missed = await self._fetch(room_id, after, before or 0, BACKFILL_MAX)
        except Exception as exc:  # the database is out of reach: the client can still catch up itself
            log.warning("room.backfill_failed", room_id=room_id, after=after, error=repr(exc))
            return
        for message in missed:
            targets = [r for r in recipients if (self.cursors.get(r[0], room_id) or 0) < message["seq"]]
            if targets:
                self.backfilled += 1
                await self._send(room_id, message, targets, send)
        if missed:
            log.info("room.backfilled", room_id=room_id, after=after, messages=len(missed), sockets=len(recipients))

    async def _send(self, room_id: str, message: dict[str, Any], recipients: list[Recipient], send: Send) -> None:
        await send(message, recipients)
        for sid, _ in recipients:
            self.cursors.sent(sid, room_id, message["seq"])
