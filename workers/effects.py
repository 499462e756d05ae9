"""What a command produced, stored with its inbox row and carried out only after the commit.

Effects are socket emits (through Redis) and follow-up commands (through RabbitMQ,
with publisher confirms). A redelivered, retried or replayed command carries out its stored
effects again, so a crash between the commit and the publish loses nothing, with one exception:
emits are sent again only while they are not marked published (``inbox.mark_emitted``, right
after the publish), because clients written for the original server do not dedupe. The window
left is a crash between the publish and its mark: that command's emits go out once more when it
is redelivered. Follow-up commands are always published again; their workers dedupe on
``command_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from infra import event_log, inbox
from infra.publisher import CommandPublisher
from schemas.base import Command
from workers.emits import Emit, publish

REPLAY_MARK_WAIT_S = 2.0  # how long a duplicate waits for the applying delivery to mark its emits
REPLAY_RECENT_S = 10.0  # an outcome finished longer ago and still unmarked was abandoned


class FollowUp(TypedDict):
    queue: str
    actor: str
    command: dict[str, Any]


def follow_up(queue: str, actor: str, command: Command) -> FollowUp:
    return {"queue": queue, "actor": actor, "command": command.model_dump(mode="json")}


@dataclass(frozen=True, slots=True)
class Outcome:
    """``fresh`` is False for a duplicate, which changed nothing and re-runs the stored effects.
    ``emitted_ids`` are the commands whose emits these are, marked published once they went out."""

    fresh: bool
    status: inbox.Status
    emits: list[Emit] = field(default_factory=list)
    follow_ups: list[FollowUp] = field(default_factory=list)
    emitted_ids: tuple[str, ...] = ()

    @property
    def log_status(self) -> event_log.Status:
        """What an actor returns for the event log (workers/middleware/event_log.py): a duplicate changed nothing."""
        return self.status if self.fresh else "duplicate"

    def stored_result(self, **extra: Any) -> dict[str, Any]:
        return {"emits": self.emits, "follow_ups": self.follow_ups, **extra}


def replay(stored: inbox.Stored) -> Outcome:
    """The stored outcome to carry out again: its emits only if they were never marked published."""
    follow_ups = list(stored.result.get("follow_ups", []))
    if stored.emitted:
        return Outcome(False, stored.status, [], follow_ups)
    return Outcome(False, stored.status, list(stored.result.get("emits", [])), follow_ups, (stored.command_id,))


async def carry_out(emitter: Any, publisher: CommandPublisher, outcome: Outcome, pool: Any) -> None:
    """Publish follow-up commands first (durable), then the socket emits, then mark them published.

    A duplicate taken while the delivery that applied the command is still publishing its emits
    (two copies of one command on two threads) finds them not yet marked: it waits a moment for
    that mark (:data:`REPLAY_MARK_WAIT_S`) instead of publishing them a second time. An outcome
    finished longer ago (:data:`REPLAY_RECENT_S`) and still unmarked was abandoned (its worker died
    between the commit and the publish): it is published again at once.
    """
    for item in outcome.follow_ups:
        await publisher.publish_payload(item["queue"], item["actor"], item["command"])
    if outcome.emits and not outcome.fresh and outcome.emitted_ids:
        if await inbox.emitted_meanwhile(pool, outcome.emitted_ids, REPLAY_MARK_WAIT_S, REPLAY_RECENT_S):
            return
    if outcome.emits:
        await publish(emitter, outcome.emits)
        if outcome.emitted_ids:
            await inbox.mark_emitted(pool, outcome.emitted_ids)
