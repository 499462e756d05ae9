"""The parts of the dead-letter tool that need no broker: time filters and the requeued body."""

from __future__ import annotations

import datetime as dt

import dramatiq
import pytest

from infra.dead_letters import DeadMessage, Filters, fresh_body, parse_since, queues_for
from schemas.queues import CHAT_PARTITION_QUEUES, WORK_QUEUES

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90s", NOW - dt.timedelta(seconds=90)),
        ("15m", NOW - dt.timedelta(minutes=15)),
        ("2h", NOW - dt.timedelta(hours=2)),
        ("7d", NOW - dt.timedelta(days=7)),
        ("2026-11-23T10:00", dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)),
        ("2026-11-23T10:00:00+01:00", dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)),
    ],
)
def test_since_accepts_ages_and_iso_times(value, expected):
    assert parse_since(value, NOW) == expected


@pytest.mark.parametrize("value", ["", "yesterday", "5w", "h", "-3h"])
def test_since_rejects_anything_else(value):
    with pytest.raises(ValueError):
        parse_since(value, NOW)


def dead(
    actor: str = "chat_send_message", failed_at: dt.datetime | None = NOW, queue: str = "chat", **options
) -> DeadMessage:
    message = dramatiq.Message(
        queue_name=f"{queue}.DQ",
        actor_name=actor,
        args=(),
        kwargs={"command": {"command_id": "c1"}},
        options=options,
        message_id="m1",
    )
    return DeadMessage(
        queue=queue,
        actor=actor,
        message_id="m1",
        command_id="c1",
        command_type=None,
        enqueued_at=None,
        failed_at=failed_at,
        retries=int(options.get("retries", 0)),
        traceback=options.get("traceback"),
        body=message.asdict(),
    )


def test_filters_match_on_actor_time_and_ids():
    d = dead()
    assert Filters(("chat",)).matches(d)
    assert not Filters(("chat",), actor="chat_mark_read").matches(d)
    assert Filters(("chat",), since=NOW).matches(d)
    assert not Filters(("chat",), since=NOW + dt.timedelta(seconds=1)).matches(d)
    assert not Filters(("chat",), since=NOW).matches(dead(failed_at=None))
    assert not Filters(("chat",), message_ids=frozenset({"other"})).matches(d)


def test_a_requeued_body_targets_the_work_queue_with_fresh_retries():
    d = dead(retries=5, traceback="Traceback...\nError: boom", eta=1, requeue_timestamp=2, max_retries=7)
    message = dramatiq.Message.decode(fresh_body(d))
    assert message.queue_name == "chat" and message.message_id == "m1"
    assert message.kwargs == {"command": {"command_id": "c1"}}
    assert message.options == {"max_retries": 7}  # an operator's own option stays; the retry bookkeeping goes


def test_the_traceback_tail_skips_marker_lines():
    tb = "Traceback (most recent call last):\n  File x\n    f()\n    ^^^\nValueError: boom\n"
    assert dead(traceback=tb).traceback_tail == [
        "Traceback (most recent call last):",
        "  File x",
        "    f()",
        "ValueError: boom",
    ]


def test_a_partition_dead_letter_is_requeued_to_plain_chat():
    d = dead(queue="chat.p2", retries=3, traceback="Traceback...\nError: boom")
    assert d.queue == "chat.p2" and d.target_queue == "chat"  # listed where it died, sent where it always runs
    message = dramatiq.Message.decode(fresh_body(d))
    assert message.queue_name == "chat" and message.actor_name == "chat_send_message"
    assert dead(queue="billing").target_queue == "billing"


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        (None, WORK_QUEUES),
        ("chat", ("chat", *CHAT_PARTITION_QUEUES)),
        ("chat.p2", ("chat.p2",)),
        ("billing", ("billing",)),
        ("ai.XQ", ("ai",)),
    ],
)
def test_a_selection_covers_a_capability_with_its_partitions(queue, expected):
    assert queues_for(queue, WORK_QUEUES) == expected


def test_the_tools_accept_a_capability_or_a_partition():
    from ingress.http.admin_api import BadRequest
    from ingress.http.admin_api import _queue as admin_queue
    from scripts.dlq import _parser

    assert _parser().parse_args(["list", "--queue", "chat.p2.XQ"]).queue == "chat.p2"
    assert _parser().parse_args(["list", "--queue", "chat"]).queue == "chat"
    with pytest.raises(SystemExit):
        _parser().parse_args(["list", "--queue", "chat.p9"])
    assert admin_queue("chat.p3") == "chat.p3" and admin_queue("chat.XQ") == "chat"
    with pytest.raises(BadRequest):
        admin_queue("chat.p4")
