"""The spending policy (domain/spending.py): debts first, no spending in debt, quota, then the charge."""

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from domain.calls import MeterStep
from domain.credits import Balance, Blocked, Charged, CreditPolicy
from domain.spending import (
    Credits,
    CreditsPaid,
    Debt,
    InDebt,
    Minutes,
    NeedsCredits,
    OverQuota,
    Quota,
    Settlement,
    Words,
    agent_call_gate,
    decide_spend,
    receive_credits,
    settle_debts,
)
from domain.tips import TipBlocked

P = CreditPolicy(words_per_credit=1000, grace_words=50, word_window_ttl_s=86_400)
NOW = 1_700_000_000.0
TODAY = date(2023, 11, 14)


def test_debts_are_paid_oldest_first_from_whole_credits():
    settlements, balance, owed = settle_debts(Balance(credits=5), [Debt(1, 3, 1), Debt(2, 4, 0)])
    assert settlements == (Settlement(1, 2, 3), Settlement(2, 3, 3))
    assert (balance.credits, owed) == (0, 1)


def test_a_spend_in_debt_is_refused_but_what_was_paid_stays_paid():
    spend = decide_spend(Balance(credits=2), [Debt(7, 5, 0)], Words(10), now=NOW, policy=P)
    assert spend.verdict == InDebt(3) and spend.refused
    assert spend.settlements == (Settlement(7, 2, 2),) and spend.balance.credits == 0


def test_a_settled_debt_lets_the_spend_go_ahead_on_what_is_left():
    spend = decide_spend(Balance(credits=5), [Debt(7, 2, 0)], Words(1200), now=NOW, policy=P)
    assert isinstance(spend.verdict, Charged) and spend.verdict.credits_charged == 2
    assert spend.balance.credits == 1 and spend.settlements == (Settlement(7, 2, 2),)


def test_nothing_to_pay_is_never_refused_for_a_debt():
    spend = decide_spend(Balance(), [Debt(1, 9, 0)], Words(0), now=NOW, policy=P)
    assert isinstance(spend.verdict, Charged) and spend.verdict.credits_charged == 0


def test_the_debt_comes_before_the_quota_and_the_quota_before_the_charge():
    used_up = Quota("messages", "free", 3, 3, TODAY)
    assert decide_spend(Balance(), [Debt(1, 1, 0)], Words(5), now=NOW, policy=P, quota=used_up).verdict == InDebt(1)
    spend = decide_spend(Balance(credits=9), [], Words(5), now=NOW, policy=P, quota=used_up)
    assert spend.verdict == OverQuota(used_up) and spend.balance.credits == 9
    allowed = Quota("messages", "free", 3, 2, TODAY)
    assert isinstance(decide_spend(Balance(), [], Words(100), now=NOW, policy=P, quota=allowed).verdict, Blocked)


def test_a_tip_is_paid_in_whole_credits_or_not_at_all():
    spend = decide_spend(Balance(credits=5, words_left=900, words_expire_at=NOW + 9), [], Credits(5))
    assert spend.verdict == CreditsPaid(5) and spend.balance.credits == 0 and spend.balance.words_left == 900
    assert decide_spend(Balance(credits=4), [], Credits(5)).verdict == TipBlocked(required=5, credits=4)


def test_call_minutes_stop_at_the_first_one_the_caller_cannot_pay():
    assert decide_spend(Balance(credits=5), [], Minutes(1, 4, 2)).verdict == MeterStep((1, 2), True)
    assert decide_spend(Balance(credits=5), [Debt(1, 1, 0)], Minutes(0, 2, 2)).verdict == MeterStep((0, 1), False)
    assert decide_spend(Balance(credits=0), [Debt(1, 1, 0)], Minutes(3, 3, 2)).verdict == MeterStep((), False)


def test_received_credits_rearm_the_low_balance_warning():
    balance = receive_credits(Balance(credits=1, low_balance_warned=True), 3)
    assert (balance.credits, balance.low_balance_warned) == (4, False)


def test_the_agent_gate_counts_owed_credits_as_spent():
    assert agent_call_gate(Balance(credits=1), 2, 1, None, NOW, P) == InDebt(2)
    assert agent_call_gate(Balance(credits=2), 1, 2, None, NOW, P) == NeedsCredits(2)
    used_up = Quota("ai_tokens", "free", 10, 10, TODAY)
    assert agent_call_gate(Balance(credits=3), 1, 2, used_up, NOW, P) == OverQuota(used_up)
    assert agent_call_gate(Balance(credits=3), 1, 2, None, NOW, P) is None


@given(
    credits=st.integers(0, 50),
    debts=st.lists(st.tuples(st.integers(1, 20), st.integers(0, 20)), max_size=5),
    words=st.integers(0, 5000),
)
def test_credits_are_conserved_and_never_spent_in_debt(credits, debts, words):
    owed_before = [Debt(i, amount + settled, settled) for i, (amount, settled) in enumerate(debts)]
    spend = decide_spend(Balance(credits=credits), owed_before, Words(words), now=NOW, policy=P)
    paid = sum(s.paid for s in spend.settlements)
    charged = spend.verdict.credits_charged if isinstance(spend.verdict, Charged) else 0
    assert spend.balance.credits == credits - paid - charged >= 0
    still_owed = sum(d.due for d in owed_before) - paid
    assert still_owed >= 0
    if still_owed and words:
        assert isinstance(spend.verdict, InDebt) and charged == 0
