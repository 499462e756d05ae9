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
    b = ChatBacklog(1.0, stalled_count=3, forget_after_s=30.0, clock=clock, **kw)
    b.applied([])  # the workers answer: the bound applies
    return b


def test_sends_are_refused_once_enough_of_them_waited_past_the_bound(clock):
    b = backlog(clock)
    for n in range(3):
        b.published(f"m{n}")
    clock.now += 1.5
    with pytest.raises(Rejected) as refused:
        b.check()
    assert refused.value.code == "overloaded" and refused.value.extra["retryAfterMs"] == 1500
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


def test_no_bound_before_the_workers_are_known_to_answer(clock):
    b = ChatBacklog(1.0, stalled_count=1, clock=clock)
    b.published("m")
    clock.now += 10
    b.check()  # workers that predate the notices: nothing would ever answer
    b.applied([])
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
