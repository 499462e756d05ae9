"""A socket emit as workers store and publish it: an event, the channel (Socket.IO room) it goes
to, and its JSON payload."""

from __future__ import annotations

from typing import Any, TypedDict


class Emit(TypedDict):
    event: str
    room: str
    data: dict[str, Any]


def emit(event: str, room: str, data: dict[str, Any]) -> Emit:
    return {"event": event, "room": room, "data": data}
