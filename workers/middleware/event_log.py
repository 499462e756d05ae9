"""Log every processed command to the event log (``infra/event_log.py``), with its status.

The status is the actor's return value: ``"applied"``, ``"rejected"`` or ``"duplicate"`` (the inbox,
or the outbound claim, said it was done already). A command whose retries are exhausted is logged
``failed`` with its error; a failure that will be retried logs nothing yet. One upsert per
processed message, on dramatiq's event-loop thread, with the worker's pool, after the effect's
transaction has committed. Logging is best effort: a failure to log is itself logged, and never
fails or retries the command.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, TypeGuard, get_args

import structlog
from dramatiq import Middleware
from dramatiq.common import q_name

from infra import event_log
from workers.middleware import running_loop_thread
from workers.resources import ResourceHolder

log = structlog.get_logger(__name__)

_STATUSES = frozenset(get_args(event_log.Status))


def _is_status(result: object) -> TypeGuard[event_log.Status]:
    return isinstance(result, str) and result in _STATUSES


class _DropDiscardedResultWarning(logging.Filter):
    """dramatiq warns for every actor that returns a value without its Results middleware; here the
    value is not discarded, this middleware reads it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned a value that is not None, and you haven't added the Results" not in record.getMessage()


class EventLog(Middleware):
    """Reads the actor option ``batch_of``: a batch's commands are logged one by one, as commands of
    that actor (by the batch's own transaction when it succeeds, here when it is given up)."""

    actor_options: ClassVar[set[str]] = {"batch_of"}

    def __init__(self, resources: ResourceHolder) -> None:
        self._resources = resources
        logging.getLogger("dramatiq.worker.WorkerThread").addFilter(_DropDiscardedResultWarning())

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        batch_of = broker.get_actor(message.actor_name).options.get("batch_of")
        if batch_of is not None:
            if exception is not None and message.failed:
                self._log_batch(message, batch_of, repr(exception))
            return
        if exception is not None:
            if message.failed:  # retries exhausted, or an exception the actor never retries
                self._log(message, "failed", repr(exception))
            return
        if _is_status(result):
            self._log(message, result)
        else:
            log.warning(
                "event_log.no_status",
                actor=message.actor_name,
                message_id=message.message_id,
                result=repr(result)[:200],
            )

    def after_skip_message(self, broker, message) -> None:
        if message.failed:  # skipped for good, e.g. too old for its age limit
            self._log(message, "failed", "skipped")

    def _log_batch(self, message: Any, actor: str, error: str) -> None:
        batch = message.kwargs.get("command") if isinstance(message.kwargs, dict) else None
        commands = batch.get("commands") if isinstance(batch, dict) else None
        queue = q_name(message.queue_name)
        for command in commands if isinstance(commands, list) else []:
            entry = event_log.entry_for(queue, actor, command, "failed", error)
            if entry is not None:
                self._write(message, entry, "failed")

    def _log(self, message: Any, status: event_log.Status, error: str | None = None) -> None:
        command = message.kwargs.get("command") if isinstance(message.kwargs, dict) else None
        entry = event_log.entry_for(q_name(message.queue_name), message.actor_name, command, status, error)
        if entry is not None:
            self._write(message, entry, status)

    def _write(self, message: Any, entry: event_log.Entry, status: event_log.Status) -> None:
        try:
            running_loop_thread().run_coroutine(self._record(entry))
        except Exception as exc:
            log.error(
                "event_log.write_failed",
                actor=message.actor_name,
                command_id=entry.command_id,
                status=status,
                error=repr(exc),
            )

    async def _record(self, entry: event_log.Entry) -> None:
        res = await self._resources.get()
        await event_log.record(res.pool, entry)
