"""How infra.queue_stats folds RabbitMQ's queues into one row per capability, and how ages print."""

from __future__ import annotations

import datetime as dt

import pydantic
import pytest

from infra.queue_stats import _Raw, build_rows
from infra.settings import Settings
from schemas.queues import ALL_QUEUES
from scripts.status import format_age

NOW = dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.UTC)


def raw(ready: int = 0, unacked: int = 0, consumers: int = 0, head: int | None = None, rate: float | None = None):
    return _Raw("running", "classic", ready, unacked, consumers, head, rate, rate, rate)


def test_delay_and_dead_letter_queues_fold_into_their_capability_row():
    rows = build_rows(
        {
            "chat": raw(ready=4, unacked=2, consumers=3, head=int(NOW.timestamp()) - 90, rate=1.5),
            "chat.DQ": raw(ready=1, unacked=5),
            "chat.XQ": raw(ready=2, unacked=1),
            "ai": raw(ready=0, head=int(NOW.timestamp()) - 10),
            "unrelated": raw(ready=99),
        },
        NOW,
    )
    assert [row.queue for row in rows] == list(ALL_QUEUES)
    chat = rows[0]
    assert (chat.ready, chat.unacked, chat.delayed, chat.dead, chat.consumers) == (4, 2, 6, 3, 3)
    assert chat.oldest_age_s == 90 and chat.in_rate == chat.out_rate == 1.5
    ai = next(row for row in rows if row.queue == "ai")
    assert ai.oldest_age_s is None  # nothing ready: a stale head timestamp is not an age
    outbound = next(row for row in rows if row.queue == "outbound")
    assert outbound.state == "absent" and outbound.in_rate is None and outbound.queue_type is None


def test_the_chat_row_sums_chat_and_its_partitions():
    ts = int(NOW.timestamp())
    rows = build_rows(
        {
            "chat": raw(ready=1, unacked=1, consumers=2, head=ts - 5, rate=1.0),
            "chat.DQ": raw(ready=1),
            "chat.XQ": raw(ready=1),
            "chat.p0": raw(ready=3, unacked=2, consumers=1, head=ts - 40, rate=0.5),
            "chat.p0.DQ": raw(unacked=4),
            "chat.p0.XQ": raw(ready=2, unacked=1),
            "chat.p3": raw(ready=0, consumers=1, head=ts - 900, rate=0.25),  # nothing ready: its head is no age
            "chat.p3.XQ": raw(ready=5),
            # chat.p1 and chat.p2 not declared yet: they add nothing
        },
        NOW,
    )
    assert [row.queue for row in rows] == list(ALL_QUEUES)  # still one row per capability
    chat = rows[0]
    assert (chat.state, chat.queue_type) == ("running", "classic")
    assert (chat.ready, chat.unacked, chat.delayed, chat.dead, chat.consumers) == (4, 3, 5, 9, 2)
    assert chat.oldest_age_s == 40
    assert chat.in_rate == chat.out_rate == chat.deliver_rate == 1.75


def test_a_partition_in_trouble_shows_in_the_chat_row_and_absent_partitions_do_not():
    only_chat = build_rows({"chat": raw(ready=2)}, NOW)[0]
    assert only_chat.state == "running" and only_chat.ready == 2
    crashed = _Raw("crashed", "quorum", 0, 0, 0, None)
    row = build_rows({"chat": raw(), "chat.p1": crashed}, NOW)[0]
    assert row.state == "crashed"
    partitions_only = build_rows({"chat.p2": raw(ready=1, consumers=1)}, NOW)[0]
    assert partitions_only.state == "running" and partitions_only.ready == 1
    assert build_rows({"chat.p2.XQ": raw(ready=1)}, NOW)[0].state == "absent"  # no work queue at all


def test_without_rates_the_summed_rates_stay_unknown():
    no_rates = _Raw("running", "classic", 1, 0, 1, None)  # rabbitmqctl: no rates
    chat = build_rows({"chat": no_rates, "chat.p0": no_rates}, NOW)[0]
    assert chat.in_rate is chat.out_rate is chat.deliver_rate is None and chat.ready == 2


def test_a_head_timestamp_from_a_fast_clock_is_age_zero_not_negative():
    rows = build_rows({"chat": raw(ready=1, head=int(NOW.timestamp()) + 5)}, NOW)
    assert rows[0].oldest_age_s == 0


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (0, "0s"), (59.9, "59s"), (60, "1m00s"), (125, "2m05s"), (3725, "1h02m"), (90_061, "1d01h")],
)
def test_ages_print_in_two_units(seconds, shown):
    assert format_age(seconds) == shown


@pytest.mark.parametrize("url", ["rabbit:15672", "ftp://rabbit", "http://", "http://rabbit 1:15672"])
def test_a_management_url_that_is_not_http_is_refused_at_start(url):
    with pytest.raises(pydantic.ValidationError, match="rabbitmq_management_url"):
        Settings(jwt_secret="x" * 16, admin_token="y" * 16, rabbitmq_management_url=url)


def test_management_url_accepts_credentials_and_a_path_prefix():
    settings = Settings(jwt_secret="x" * 16, admin_token="y" * 16, rabbitmq_management_url="https://u:p@mq:443/rabbit")
    assert settings.rabbitmq_management_url == "https://u:p@mq:443/rabbit"
