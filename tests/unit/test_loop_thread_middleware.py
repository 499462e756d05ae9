"""Middleware that hands a coroutine to dramatiq's event loop thread when there is none (before the
AsyncIO middleware starts it at worker boot, after it stops at shutdown): the log says so, and
nothing is raised into dramatiq's worker thread."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from dramatiq.asyncio import get_event_loop_thread, set_event_loop_thread
from structlog.testing import capture_logs

from workers.middleware import running_loop_thread
from workers.middleware.event_log import EventLog
from workers.middleware.fail_closed import FailClosed

COMMAND = {"type": "chat.send_message", "command_id": "msg:alice:c1", "user_id": "alice"}


class Broker:
    def get_actor(self, name: str) -> Any:
        return SimpleNamespace(options={})


class Resources:
    async def get(self) -> Any:
        raise AssertionError("no resources are needed without a loop to use them on")


def message(failed: bool) -> Any:
    return SimpleNamespace(
        actor_name="chat_send_message",
        queue_name="chat",
        message_id="m-1",
        failed=failed,
        kwargs={"command": dict(COMMAND)},
    )


@pytest.fixture
def no_loop_thread() -> Iterator[None]:
    before = get_event_loop_thread()
    set_event_loop_thread(None)
    try:
        yield
    finally:
        set_event_loop_thread(before)


def test_running_loop_thread_names_what_is_missing(no_loop_thread):
    with pytest.raises(RuntimeError, match="event loop thread is not running"):
        running_loop_thread()


def test_running_loop_thread_is_dramatiqs(no_loop_thread):
    thread: Any = SimpleNamespace()
    set_event_loop_thread(thread)
    assert running_loop_thread() is thread


def test_fail_closed_logs_a_report_it_cannot_make(no_loop_thread):
    with capture_logs() as logs:
        FailClosed(Resources()).after_process_message(Broker(), message(failed=True), exception=ValueError("boom"))
    events = [entry["event"] for entry in logs]
    assert events == ["command.failed", "command.failure_report_failed"]
    assert logs[1]["log_level"] == "error"


def test_event_log_logs_an_entry_it_cannot_write(no_loop_thread):
    with capture_logs() as logs:
        EventLog(Resources()).after_process_message(Broker(), message(failed=False), result="applied")
    [entry] = logs
    assert entry["event"] == "event_log.write_failed"
    assert entry["command_id"] == COMMAND["command_id"] and entry["status"] == "applied"
    assert "event loop thread is not running" in entry["error"]
