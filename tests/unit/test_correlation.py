"""The log context of a command: bound for a message's whole processing by real dramatiq workers,
seen inside the actor's coroutine, never left behind for the next message; scoped at the edge."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import dramatiq
import pytest
import structlog
from dramatiq import Middleware, Worker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO
from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars

from infra.logging import log_scope
from infra.publisher import _log_ids
from workers.middleware.correlation import LogContext, detached, message_fields

Seen = list[tuple[str, dict[str, Any]]]


class Recorder(Middleware):
    """Added after LogContext: what the hooks of the other middleware see, in the worker thread."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def before_process_message(self, broker, message) -> None:
        self.seen.append(("before", get_contextvars()))

    def after_process_message(self, broker, message, *, result=None, exception=None) -> None:
        self.seen.append(("after", get_contextvars()))


@pytest.fixture
def processed() -> Seen:
    """Three messages through one worker thread: a command, a body without one, a failing command."""
    seen: Seen = []
    broker = StubBroker()
    broker.add_middleware(LogContext(), before=type(broker.middleware[0]))
    broker.add_middleware(AsyncIO())
    broker.add_middleware(Recorder(seen))

    @dramatiq.actor(broker=broker, queue_name="corr", max_retries=0)
    async def act(command: dict[str, Any]) -> None:
        seen.append(("coroutine", get_contextvars()))
        bind_contextvars(bound_inside="x")  # stays in this coroutine's copy of the context
        if command.get("fail"):
            raise ValueError("boom")

    worker = Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        act.send(command={"command_id": "c-1", "type": "chat.send_message"})
        act.send(command={"text": "no id"})
        act.send(command={"command_id": "c-3", "type": "chat.send_message", "fail": True})
        broker.join("corr", fail_fast=False)
        worker.join()
    finally:
        worker.stop()
    return seen


def test_every_stage_of_a_message_sees_its_own_command_id_only(processed: Seen):
    assert [stage for stage, _ in processed] == ["before", "coroutine", "after"] * 3
    ids = [context.get("command_id") for _, context in processed]
    assert ids == ["c-1"] * 3 + [None] * 3 + ["c-3"] * 3
    for _, context in processed:
        assert context["actor"] == "act" and context["queue"] == "corr" and context["message_id"]
        assert "bound_inside" not in context  # nothing the previous coroutine bound
    first, second = processed[0][1], processed[3][1]
    assert first["message_id"] != second["message_id"]
    assert processed[1][1]["command_type"] == "chat.send_message" and "command_type" not in second


def test_message_fields_tolerate_bodies_without_a_command():
    message = dramatiq.Message(queue_name="chat", actor_name="a", args=(), kwargs={"command": "x"}, options={})
    assert message_fields(message) == {"actor": "a", "message_id": message.message_id, "queue": "chat"}


async def test_detached_work_and_its_tasks_carry_no_command_context():
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker")
    marker.set("kept")
    clear_contextvars()
    bind_contextvars(command_id="first-command")
    try:

        async def reader() -> dict[str, Any]:  # a connection's background task
            return get_contextvars()

        async def open_connection() -> tuple[dict[str, Any], dict[str, Any], str]:
            return get_contextvars(), await asyncio.create_task(reader()), marker.get()

        own, spawned, kept = await detached(open_connection)
        assert own == {} and spawned == {} and kept == "kept"
        assert get_contextvars() == {"command_id": "first-command"}  # the caller's is untouched
    finally:
        clear_contextvars()


def test_log_scope_drops_whatever_the_block_bound():
    clear_contextvars()
    bind_contextvars(service_wide="s", sid="old")
    try:
        with log_scope(sid="new"):
            bind_contextvars(command_id="c-9")
            assert get_contextvars() == {"service_wide": "s", "sid": "new", "command_id": "c-9"}
        assert get_contextvars() == {"service_wide": "s", "sid": "old"}
    finally:
        clear_contextvars()


def test_a_follow_up_names_the_command_that_caused_it():
    clear_contextvars()
    payload = {"command_id": "ai:1", "type": "ai.agent_reply"}
    try:
        assert _log_ids(payload) == {"command_id": "ai:1", "command_type": "ai.agent_reply"}
        with structlog.contextvars.bound_contextvars(command_id="ai:1"):  # ingress publishing its own command
            assert "caused_by" not in _log_ids(payload)
        with structlog.contextvars.bound_contextvars(command_id="msg:u:1"):  # a worker's follow-up
            assert _log_ids(payload)["caused_by"] == "msg:u:1"
    finally:
        clear_contextvars()
