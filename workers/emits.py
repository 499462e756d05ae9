"""Results fan out to ingress nodes through Redis pub/sub, only after their transaction commits.

An emit is stored with the command's result, so a redelivered command can publish exactly what
the first delivery did, while it is not marked published (workers/effects.py); the nodes do not
send a room message to a socket that has its ``seq`` already (ingress/room_sequencer.py).
"""

from __future__ import annotations

import structlog

from infra.redis_clients import BatchingRedisManager
from schemas.emits import Emit, emit

__all__ = ["Emit", "emit", "publish"]

log = structlog.get_logger(__name__)


async def publish(emitter: BatchingRedisManager, emits: list[Emit]) -> None:
    """Fan the emits out in one Redis message, in order; one ``result.published`` line (info) per
    call, one ``result.emit`` (debug) each.

    Lines carry the command being processed (its ``command_id`` is in the worker's log context).
    """
    if not emits:
        return
    await emitter.emit_many([(item["event"], item["data"], item["room"]) for item in emits])
    for item in emits:
        log.debug("result.emit", event_name=item["event"], channel=item["room"])
    log.info(
        "result.published",
        emits=len(emits),
        event_names=sorted({item["event"] for item in emits}),
        channels=sorted({item["room"] for item in emits}),
    )
