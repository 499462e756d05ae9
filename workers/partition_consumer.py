"""A chat partition's consumer: the messages queued behind one another are applied as one batch.

Under load a partition queue fills with small flushes (each ingress node publishes one whenever its
previous one is confirmed). Taken one at a time, each pays its own transaction, commit and broker
round trip, so the workers fall further behind exactly when they are busiest. This consumer hands
dramatiq one message at a time, in the queue's order; when several are already waiting, that one
message is a ``chat_send_batch`` carrying all their commands, in order, up to
:data:`schemas.commands.MAX_SEND_BATCH`.

Order holds because the next message is handed over only once the previous one has been acked or
rejected (the queue's single active consumer does the rest, pool-wide). Acking a bundle acks each
message it was made of; rejecting it dead-letters each of them as it was published. A message that
is not a fresh chat send (a retry, a delayed or unknown message) is handed over alone.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from dramatiq.broker import Consumer, MessageProxy
from dramatiq.message import Message

from schemas.commands import MAX_SEND_BATCH
from schemas.queues import SEND_BATCH_ACTOR, SEND_MESSAGE_ACTOR

PARTITION_PREFETCH = 64  # messages the broker may push ahead; the consumer bundles what has arrived
_BUNDLE_IDS = uuid.UUID("5d0c8a63-3f1e-4c61-9a8e-4f64a0b1c2d7")  # uuid5 namespace of bundle message ids


def commands_in(message: MessageProxy) -> int | None:
    """How many chat sends ``message`` carries, or None if it must be handed over alone."""
    if message.options.get("eta") is not None or message.options.get("retries"):
        return None
    command = message.kwargs.get("command") if isinstance(message.kwargs, dict) else None
    if not isinstance(command, dict):
        return None
    if message.actor_name == SEND_MESSAGE_ACTOR:
        return 1
    if message.actor_name == SEND_BATCH_ACTOR and isinstance(commands := command.get("commands"), list):
        return len(commands)
    return None


def bundle_message(parts: list[MessageProxy]) -> Message:
    """One ``chat_send_batch`` message with every command of ``parts``, in their order."""
    commands: list[Any] = []
    for part in parts:
        command = part.kwargs["command"]
        commands.extend(command["commands"] if part.actor_name == SEND_BATCH_ACTOR else [command])
    batch = {
        "type": "chat.send_batch",
        "command_id": f"bundle:{parts[0].message_id}+{len(parts) - 1}",  # names the delivery in logs
        "commands": commands,
    }
    return Message(
        queue_name=parts[0].queue_name,
        actor_name=SEND_BATCH_ACTOR,
        args=(),
        kwargs={"command": batch},
        options={},
        message_id=str(uuid.uuid5(_BUNDLE_IDS, ",".join(part.message_id for part in parts))),
    )


class Bundle(MessageProxy):
    """The message dramatiq runs in place of ``parts``, the messages it was made of."""

    def __init__(self, parts: list[MessageProxy]) -> None:
        super().__init__(bundle_message(parts))
        self.parts = parts
        self.redelivered = any(getattr(part, "redelivered", False) for part in parts)


class PartitionConsumer(Consumer):
    """Wraps dramatiq's RabbitMQ consumer of one partition queue (prefetch > 1)."""

    def __init__(self, inner: Any, timeout_ms: int, max_commands: int = MAX_SEND_BATCH) -> None:
        self.inner = inner
        self.max_commands = max_commands
        self.timeout_s = timeout_ms / 1000
        self._held: MessageProxy | None = None  # taken off the channel, next in order
        self._idle = threading.Event()  # no handed-over message is unfinished
        self._idle.set()

    def __iter__(self) -> PartitionConsumer:
        return self

    def __next__(self) -> MessageProxy | None:
        if not self._wait_until_idle():
            return None  # the consumer thread checks whether it should stop, then asks again
        first, self._held = self._held or next(self.inner), None
        if first is None:
            return None
        parts, count = [first], commands_in(first)
        if count is not None:
            self.inner.connection.process_data_events(time_limit=0)  # what the socket already holds
            while count < self.max_commands and self.inner.channel.get_waiting_message_count():
                following = next(self.inner)
                if following is None:
                    break
                more = commands_in(following)
                if more is None or count + more > self.max_commands:
                    self._held = following
                    break
                parts.append(following)
                count += more
        self._idle.clear()
        return parts[0] if len(parts) == 1 else Bundle(parts)

    def _wait_until_idle(self) -> bool:
        deadline = time.monotonic() + self.timeout_s
        while not self._idle.wait(0.25):
            self.inner.connection.process_data_events(time_limit=0)  # heartbeats, queued acks
            if time.monotonic() >= deadline:
                return False
        return True

    def ack(self, message: MessageProxy) -> None:
        try:
            for part in getattr(message, "parts", (message,)):
                self.inner.ack(part)
        finally:
            self._idle.set()

    def nack(self, message: MessageProxy) -> None:
        try:
            for part in getattr(message, "parts", (message,)):
                self.inner.nack(part)
        finally:
            self._idle.set()

    def requeue(self, messages: Any) -> None:
        self.inner.requeue(messages)

    def close(self) -> None:
        self.inner.close()
