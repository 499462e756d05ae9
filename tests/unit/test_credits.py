import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.credits import Balance, Blocked, Charged, CreditPolicy, charge_words, set_credits, top_up
from domain.errors import InvalidAmount

P = CreditPolicy(words_per_credit=1000, grace_words=50, word_window_ttl_s=86_400)
NOW = 1_700_000_000.0


def test_seed_example_five_credits_then_1200_words():
    outcome = charge_words(Balance(credits=5), 1200, NOW, P)
    assert isinstance(outcome, Charged)
    assert (outcome.credits_charged, outcome.balance.credits, outcome.balance.words_left) == (2, 3, 800)


def test_a_2000_word_message_charges_two_credits():  # the original charged at most one
    outcome = charge_words(Balance(credits=5), 2000, NOW, P)
    assert outcome.credits_charged == 2 and outcome.balance.words_left == 0


def test_words_left_are_spent_first():
    outcome = charge_words(Balance(credits=1, words_left=300, words_expire_at=NOW + 10), 250, NOW, P)
    assert (outcome.credits_charged, outcome.balance.credits, outcome.balance.words_left) == (0, 1, 50)


def test_zero_words_are_free_and_change_nothing():
    balance = Balance(credits=0)
    outcome = charge_words(balance, 0, NOW, P)
    assert isinstance(outcome, Charged) and outcome.credits_charged == 0 and not outcome.warn_low_balance


def test_grace_covers_a_small_shortfall_and_spends_everything():
    outcome = charge_words(Balance(credits=1, words_left=10, words_expire_at=NOW + 5), 1060, NOW, P)
    assert isinstance(outcome, Charged)
    assert (outcome.credits_charged, outcome.free_words, outcome.balance.credits, outcome.balance.words_left) == (
        1,
        50,
        0,
        0,
    )


def test_beyond_grace_is_blocked_and_charges_nothing():
    outcome = charge_words(Balance(credits=1, words_left=10, words_expire_at=NOW + 5), 1061, NOW, P)
    assert outcome == Blocked(words=1061, required=2, credits=1, words_left=10)


def test_words_left_expire_after_the_window():
    balance = Balance(credits=0, words_left=900, words_expire_at=NOW)
    assert isinstance(charge_words(balance, 100, NOW, P), Blocked)
    assert charge_words(balance, 100, NOW - 1, P).balance.words_left == 800


def test_warning_fires_once_until_top_up():
    first = charge_words(Balance(credits=1), 10, NOW, P)
    assert first.warn_low_balance and first.balance.words_left == 990
    second = charge_words(first.balance, 10, NOW, P)
    assert not second.warn_low_balance
    refilled = top_up(second.balance, 1)
    assert not refilled.low_balance_warned
    third = charge_words(refilled, 1000, NOW, P)
    assert third.warn_low_balance


def test_no_warning_while_a_credit_worth_remains():
    assert not charge_words(Balance(credits=3), 1000, NOW, P).warn_low_balance


def test_invalid_amounts():
    with pytest.raises(InvalidAmount):
        charge_words(Balance(), -1, NOW, P)
    with pytest.raises(InvalidAmount):
        top_up(Balance(), 0)
    with pytest.raises(InvalidAmount):
        set_credits(Balance(), -5)


def test_set_credits_returns_the_delta():
    assert set_credits(Balance(credits=7), 2)[1] == -5
    assert set_credits(Balance(credits=7), 10)[0].credits == 10


balances = st.builds(
    Balance,
    credits=st.integers(0, 50),
    words_left=st.integers(0, 999),
    words_expire_at=st.just(NOW + 3600),
    low_balance_warned=st.booleans(),
)
policies = st.builds(
    CreditPolicy, words_per_credit=st.integers(1, 2000), grace_words=st.integers(0, 200), word_window_ttl_s=st.just(60)
)


@given(balances, st.integers(0, 60_000), policies)
def test_charge_conserves_words_and_never_goes_negative(balance, words, policy):
    balance = Balance(balance.credits, min(balance.words_left, policy.words_per_credit - 1), balance.words_expire_at)
    outcome = charge_words(balance, words, NOW, policy)
    before = balance.credits * policy.words_per_credit + balance.words_left
    if isinstance(outcome, Blocked):
        assert words - before > policy.grace_words
        assert outcome.required == math.ceil((words - balance.words_left) / policy.words_per_credit)
        return
    after = outcome.balance.credits * policy.words_per_credit + outcome.balance.words_left
    assert outcome.balance.credits >= 0 and 0 <= outcome.balance.words_left < policy.words_per_credit
    assert outcome.credits_charged == balance.credits - outcome.balance.credits
    # Every word is paid from the balance or forgiven by grace, never both and never lost.
    assert before - after == words - outcome.free_words
    assert 0 <= outcome.free_words <= policy.grace_words
    if outcome.free_words:
        assert outcome.balance.credits == 0 and outcome.balance.words_left == 0


@given(balances, st.lists(st.integers(1, 3000), max_size=30))
def test_a_sequence_charges_exactly_the_credits_it_opens(balance, messages):
    b = balance
    charged = 0
    delivered_words = 0
    for words in messages:
        outcome = charge_words(b, words, NOW, P)
        if isinstance(outcome, Charged):
            charged += outcome.credits_charged
            delivered_words += words - outcome.free_words
            b = outcome.balance
    assert charged == balance.credits - b.credits
    assert charged * P.words_per_credit == delivered_words - balance.words_left + b.words_left
