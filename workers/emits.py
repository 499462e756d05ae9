"""Results fan out to ingress nodes through Redis pub/sub, only after their transaction commits.

An emit is stored with the command's result, so a redelivered command can
publish exactly what the first delivery did. Clients dedupe on ``messageId``.
"""

from __future__ import annotations

from typing import Any, TypedDict

import socketio


class Emit(TypedDict):
    event: str
    room: str
    data: dict[str, Any]


def emit(event: str, room: str, data: dict[str, Any]) -> Emit:
    return {"event": event, "room": room, "data": data}


async def publish(emitter: socketio.AsyncRedisManager, emits: list[Emit]) -> None:
    for item in emits:
        await emitter.emit(item["event"], item["data"], namespace="/", room=item["room"])
