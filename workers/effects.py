"""What a command produced, stored with its inbox row and carried out only after the commit.

Effects are socket emits (through Redis) and follow-up commands (through RabbitMQ,
with publisher confirms). A redelivered command carries out its stored effects again,
so a crash between the commit and the publish loses nothing; every consumer of an
effect is idempotent (clients dedupe on ``messageId``, workers on ``command_id``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from infra import event_log, inbox
from infra.publisher import CommandPublisher
from schemas.base import Command
from workers.emits import Emit, publish


class FollowUp(TypedDict):
    queue: str
    actor: str
    command: dict[str, Any]


def follow_up(queue: str, actor: str, command: Command) -> FollowUp:
    return {"queue": queue, "actor": actor, "command": command.model_dump(mode="json")}


@dataclass(frozen=True, slots=True)
class Outcome:
    """``fresh`` is False for a duplicate, which changed nothing and re-runs the stored effects."""

    fresh: bool
    status: inbox.Status
    emits: list[Emit] = field(default_factory=list)
    follow_ups: list[FollowUp] = field(default_factory=list)

    @property
    def log_status(self) -> event_log.Status:
        """What an actor returns for the event log (workers/event_log.py): a duplicate changed nothing."""
        return self.status if self.fresh else "duplicate"

    def stored_result(self, **extra: Any) -> dict[str, Any]:
        return {"emits": self.emits, "follow_ups": self.follow_ups, **extra}


def replay(stored: inbox.Stored) -> Outcome:
    return Outcome(False, stored.status, list(stored.result.get("emits", [])),
                   list(stored.result.get("follow_ups", [])))  # fmt: skip


async def carry_out(emitter: Any, publisher: CommandPublisher, outcome: Outcome) -> None:
    """Publish follow-up commands first (durable), then the socket emits (best effort)."""
    for item in outcome.follow_ups:
        await publisher.publish_payload(item["queue"], item["actor"], item["command"])
    await publish(emitter, outcome.emits)
