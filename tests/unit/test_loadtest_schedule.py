"""The load test's open-loop schedule: R sends per second dealt round-robin over the clients."""

import itertools
import math

import pytest

from domain.credits import Balance, CreditPolicy
from scripts.loadtest import default_credits, open_loop_slots, open_loop_total, parse_args


def schedule(clients: int, rate: float, duration: float) -> dict[int, list[float]]:
    """Client index -> the offsets (seconds after t0) of its sends."""
    return {i: [n / rate for n in open_loop_slots(i, clients, rate, duration)] for i in range(clients)}


@pytest.mark.parametrize(
    ("clients", "rate", "duration"),
    [(50, 300, 10), (200, 1000, 30), (3, 7, 2.5), (7, 0.3, 10), (1, 1, 1), (10, 2, 1), (5, 90, 1.1), (4, 17.85, 60)],
)
def test_the_clients_together_send_every_slot_once_evenly_spaced(clients, rate, duration):
    total = open_loop_total(rate, duration)
    slots = sorted(n for i in range(clients) for n in open_loop_slots(i, clients, rate, duration))
    assert slots == list(range(total))  # each slot exactly once, none missing
    assert (total - 1) / rate < duration <= total / rate  # exactly the slots that start inside the window
    offsets = sorted(t for times in schedule(clients, rate, duration).values() for t in times)
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(offsets)}
    assert gaps <= {round(1 / rate, 9)}  # one send every 1/R seconds, whichever client it is


def test_client_i_sends_at_t0_plus_k_clients_plus_i_over_rate():
    times = schedule(clients=50, rate=300, duration=10)
    assert times[0][:3] == [0 / 300, 50 / 300, 100 / 300]
    assert times[7][:3] == [7 / 300, 57 / 300, 107 / 300]
    assert all(len(t) == 60 for t in times.values())  # 3,000 sends over 50 clients: 6/s each
    assert max(t[-1] for t in times.values()) == pytest.approx(2999 / 300)


def test_a_rate_that_does_not_divide_evenly_gives_the_first_clients_one_more():
    counts = [len(open_loop_slots(i, 4, 10, 1.05)) for i in range(4)]  # 11 slots: n = 0..10
    assert counts == [3, 3, 3, 2]
    assert sum(counts) == open_loop_total(10, 1.05) == 11


def test_more_clients_than_slots_leaves_the_last_ones_idle():
    assert [len(open_loop_slots(i, 10, 2, 1)) for i in range(10)] == [1, 1] + [0] * 8


def test_float_rounding_neither_adds_nor_loses_a_slot_at_the_end_of_the_window():
    assert math.ceil(90 * 1.1) == 100  # 99.00000000000001, yet slot 99 is at 99 / 90 == 1.1: outside
    assert open_loop_total(90, 1.1) == 99
    assert 17.85 * 60 == 1071 and 1071 / 17.85 < 60  # the product rounds to 1071, yet slot 1071 is inside
    assert open_loop_total(17.85, 60) == 1072


def test_the_default_grant_covers_every_scheduled_send():
    policy = CreditPolicy()
    for argv in (
        ["--open-loop", "--rate", "300", "--duration", "10", "--clients", "50"],
        ["--open-loop", "--rate", "1000", "--duration", "30", "--clients", "200"],
        ["--open-loop", "--rate", "5000", "--duration", "5", "--clients", "2", "--words", "200"],
    ):
        args = parse_args(argv)
        words = Balance(default_credits(args, policy), 0).words_available(0, policy)
        busiest = max(len(open_loop_slots(i, args.clients, args.rate, args.duration)) for i in range(args.clients))
        assert busiest * args.words <= words, argv


def test_open_loop_options():
    args = parse_args(["--open-loop", "--rate", "300"])
    assert (args.open_loop, args.rate, args.max_outstanding) == (True, 300, 1000)
    closed = parse_args([])
    assert (closed.open_loop, closed.rate, closed.inflight, closed.loop) == (False, None, 1, "ack")
    for bad in (
        ["--open-loop"],  # no rate to schedule
        ["--open-loop", "--rate", "10", "--inflight", "4"],
        ["--open-loop", "--rate", "10", "--loop", "delivery"],
        ["--open-loop", "--rate", "10", "--max-outstanding", "0"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_total_is_the_ceiling_of_rate_times_duration_when_exact():
    for rate, duration in ((300, 10), (1000, 30), (7, 2.5), (1, 1)):
        assert open_loop_total(rate, duration) == math.ceil(rate * duration)
