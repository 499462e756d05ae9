"""The node's view of the chat backlog (ingress/chat_backlog.py), on a clock of the test's own."""

from __future__ import annotations

import pytest

from ingress.chat_backlog import ChatBacklog
from ingress.rejections import Rejected


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def backlog(clock: Clock, **kw) -> ChatBacklog:
    return ChatBacklog(1.0, stalled_count=3, forget_after_s=30.0, clock=clock, **kw)


def test_sends_are_refused_once_enough_of_them_waited_past_the_bound(clock):
    b = backlog(clock)
    for n in range(3):
        b.published(f"m{n}")
    clock.now += 1.5
    with pytest.raises(Rejected) as refused:
        b.check()
    assert refused.value.code == "overloaded"
    assert refused.value.extra["retryAfterMs"] == 1000  # the excess drains in 0.5 s; never sooner than the bound
    b.applied(["m0"])  # the workers catch up: two still wait, fewer than the stalled count
    b.check()
    assert b.refused == 1


def test_a_few_sends_that_wait_long_on_their_own_do_not_stop_the_others(clock):
    b = backlog(clock)
    b.published("retried")
    b.published("failed-closed")
    clock.now += 20
    b.check()  # two stuck sends, fewer than the stalled count
    for n in range(5):
        b.published(f"fresh{n}")
    b.check()  # the third oldest has waited no time at all
    assert b.behind_s() == 0.0


def test_the_bound_holds_before_the_workers_were_ever_heard_from(clock):
    b = ChatBacklog(1.0, stalled_count=1, clock=clock)  # a node started while the pool is down
    b.published("m")
    clock.now += 1.5
    with pytest.raises(Rejected):
        b.check()


def test_a_send_nobody_answers_is_forgotten_and_an_interruption_forgets_all(clock):
    b = backlog(clock)
    for n in range(3):
        b.published(f"m{n}")
    clock.now += 31
    assert b.behind_s() == 0.0 and b.waiting == 0 and b.forgotten == 3
    for n in range(4):
        b.published(f"again{n}")
    b.interrupted()
    assert b.waiting == 0 and b.forgotten == 7


def test_a_resend_keeps_its_first_place_and_a_withdrawn_send_is_gone(clock):
    b = backlog(clock)
    b.published("m")
    clock.now += 0.5
    b.published("m")  # the same clientMessageId again
    b.published("x")
    b.published("y")
    clock.now += 0.6
    assert b.behind_s() == pytest.approx(0.6)  # the third oldest: y
    b.withdrawn("y")
    assert b.behind_s() == 0.0


def test_sends_are_refused_when_so_many_wait_that_a_new_one_would_wait_past_the_bound(clock):
    b = backlog(clock)
    for n in range(100):
        b.published(f"early{n}")
    clock.now += 0.5
    b.applied([f"early{n}" for n in range(100)])  # the workers answer this node's sends at 200/s
    assert b.applied_per_s() == pytest.approx(200.0)
    for n in range(150):
        b.published(f"m{n}")
    b.check()  # 150 waiting at 200/s: 0.75 s, within the bound, and none has waited yet
    for n in range(150, 260):
        b.published(f"m{n}")
    assert b.behind_s() == 0.0 and b.expected_wait_s() == pytest.approx(1.3)
    with pytest.raises(Rejected) as refused:
        b.check()
    assert refused.value.extra["retryAfterMs"] == 1000
    for n in range(260, 700):
        b.published(f"m{n}")
    with pytest.raises(Rejected) as refused:
        b.check()
    assert refused.value.extra["retryAfterMs"] == 2500  # 3.5 s of waiting sends: 2.5 s over the bound


def test_a_few_waiting_sends_are_never_refused_for_a_low_rate(clock):
    b = backlog(clock)
    b.published("one")
    clock.now += 0.1
    b.applied(["one"])
    clock.now += 1.9  # one send answered in the window: a rate of 0.5/s
    for n in range(60):
        b.published(f"m{n}")
    assert b.expected_wait_s() == 0.0  # within the floor: the age bound judges these
    b.check()


def test_the_rate_counts_only_this_nodes_sends_while_the_workers_were_busy_with_them(clock):
    b = backlog(clock)
    b.published("mine")
    clock.now += 1.0
    b.applied(["mine", "another-nodes-1", "another-nodes-2"])
    assert b.applied_per_s() == pytest.approx(1.0)  # one of ours, waited on for 1 s
    clock.now += 30.0  # idle: the rate measured last is kept for the next burst
    for n in range(80):
        b.published(f"burst{n}")
    assert b.applied_per_s() == pytest.approx(1.0)
    clock.now += 0.2
    b.applied([f"burst{n}" for n in range(40)])  # too soon after the burst began to measure
    assert b.applied_per_s() == pytest.approx(1.0)
    clock.now += 0.8
    b.applied([f"burst{n}" for n in range(40, 80)])
    assert b.applied_per_s() == pytest.approx(80.0)  # 80 answered in the 1 s they were waited on
