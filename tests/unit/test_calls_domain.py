"""The per-minute call billing rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.calls import (
    CallError,
    check_call_id,
    check_parties,
    minutes_started,
    paid_until_ms,
    plan_charges,
    split_minute,
)


@given(st.integers(0, 10**9), st.integers(0, 100))
def test_a_minute_split_always_sums_to_the_price(price, pct):
    split = split_minute(price, pct)
    assert split.to_callee + split.fee == price
    assert split.fee == price * pct // 100
    assert split.to_callee >= 0 and split.fee >= 0


def test_fee_rounds_down():
    assert (split_minute(10, 25).to_callee, split_minute(10, 25).fee) == (8, 2)
    assert (split_minute(7, 15).to_callee, split_minute(7, 15).fee) == (6, 1)
    with pytest.raises(ValueError):
        split_minute(10, 101)


def test_minutes_start_on_their_first_millisecond():
    assert minutes_started(1000, 1000, 60_000) == 1
    assert minutes_started(1000, 60_999, 60_000) == 1
    assert minutes_started(1000, 61_000, 60_000) == 2
    assert minutes_started(1000, 0, 60_000) == 1  # a clock behind the start still counts the first minute
    assert paid_until_ms(1000, 2, 60_000) == 121_000


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**5))
def test_minutes_started_is_monotonic(a, b, minute):
    lo, hi = sorted((a, b))
    assert 1 <= minutes_started(0, lo, minute) <= minutes_started(0, hi, minute)


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 1000), st.integers(0, 100))
def test_plan_charges_never_spends_more_than_the_balance(charged, extra, credits, price):
    due = charged + extra
    step = plan_charges(charged, due, credits, price)
    assert list(step.charge_minutes) == list(range(charged, charged + len(step.charge_minutes)))
    assert len(step.charge_minutes) * price <= credits
    assert step.short == (len(step.charge_minutes) < extra)
    if step.short:
        assert credits - len(step.charge_minutes) * price < price


def test_call_ids_and_parties_are_checked():
    assert check_call_id("a1_b.c:d-e") == "a1_b.c:d-e"
    for bad in ("", "has space", "x" * 129, "ünï"):
        with pytest.raises(CallError):
            check_call_id(bad)
    with pytest.raises(CallError):
        check_parties("alice", "alice")
    check_parties("alice", "bob")
