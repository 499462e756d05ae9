"""dramatiq's Retries middleware, without the one way it can lose a message.

When a command fails and has retries left, ``Retries`` re-enqueues a copy (through the delay
queue) and lets the original be acked. If that re-enqueue raises (the connection or channel is
gone, publishing is refused), dramatiq logs the error and still acks the original: the command
is silently gone (dramatiq PR #545). Here a failed re-enqueue fails the message instead, so it
is nacked into the dead-letter queue and :class:`workers.middleware.fail_closed.FailClosed` (whose hook
runs after this one) records it as ``failed`` in the inbox and tells its sender. A message is
retried, dead-lettered, or recorded as failed; never nothing.
"""

from __future__ import annotations

import structlog
from dramatiq.middleware import Retries

log = structlog.get_logger(__name__)


class SafeRetries(Retries):
    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        try:
            super().after_process_message(broker, message, result=result, exception=exception)
        except Exception as error:
            log.error(
                "retry.enqueue_failed",
                actor=message.actor_name,
                message_id=message.message_id,
                retries=message.options.get("retries"),
                error=repr(error),
            )
            message.fail()
