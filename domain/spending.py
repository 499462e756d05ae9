"""The spending policy: what happens when an account is about to pay for something.

Every path that spends credits (a chat message, the agent's reply, a channel message charged to
its tenant, a tip, a call minute) asks :func:`decide_spend`, with the account's balance locked:

1. **Debts first.** Open receivables (credits a refund could not take back) are paid from the
   balance, oldest first. Whatever is paid stays paid, even if the spend is then refused.
2. **No spending in debt.** While anything is still owed, a spend with a cost is refused.
3. **Plan quota.** A spend the plan's daily quota does not allow is refused.
4. **The charge**, by what is bought: words (whole credits opened as needed, the grace allowance,
   the low-balance warning: :func:`domain.credits.charge_words`), whole credits (a tip), or call
   minutes (each started minute prepaid, stopping at the first one the caller cannot pay).

The caller stores what the decision says (settlements, the charge, the new balance) and tells
the user; this module does no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal

from domain.calls import MeterStep, plan_charges
from domain.credits import Balance, Blocked, Charged, CreditPolicy, charge_words
from domain.plans import over_quota
from domain.tips import TipBlocked, afford_tip


@dataclass(frozen=True, slots=True)
class Debt:
    """An open receivable: ``amount`` credits owed, ``settled`` of them paid so far."""

    receivable_id: int
    amount: int
    settled: int

    @property
    def due(self) -> int:
        return self.amount - self.settled


@dataclass(frozen=True, slots=True)
class Settlement:
    """Pay ``paid`` credits of a receivable, which then stands at ``settled_after``."""

    receivable_id: int
    paid: int
    settled_after: int


QuotaKind = Literal["messages", "ai_tokens"]


@dataclass(frozen=True, slots=True)
class Quota:
    """A plan's daily limit on one kind of use, and what was used of it today (an unlimited plan
    has no Quota)."""

    kind: QuotaKind
    plan: str
    limit: int
    used: int
    day: date


@dataclass(frozen=True, slots=True)
class Words:
    words: int


@dataclass(frozen=True, slots=True)
class Credits:
    credits: int


@dataclass(frozen=True, slots=True)
class Minutes:
    """Call minutes: those from ``already_charged`` up to ``due`` at ``price`` credits each."""

    already_charged: int
    due: int
    price: int


Cost = Words | Credits | Minutes


@dataclass(frozen=True, slots=True)
class InDebt:
    """Refused: ``owed`` credits are still owed after paying what the balance could."""

    owed: int


@dataclass(frozen=True, slots=True)
class OverQuota:
    """Refused: the plan's daily quota is used up."""

    quota: Quota


@dataclass(frozen=True, slots=True)
class CreditsPaid:
    """A whole-credit payment (a tip) goes ahead."""

    credits: int


Verdict = InDebt | OverQuota | Blocked | TipBlocked | Charged | CreditsPaid | MeterStep


@dataclass(frozen=True, slots=True)
class Spend:
    """What to store: the debt ``settlements`` (always), and the ``verdict``. ``balance`` is the
    account after the settlements and, for words and tips, after the charge."""

    settlements: tuple[Settlement, ...]
    balance: Balance
    verdict: Verdict

    @property
    def refused(self) -> bool:
        return isinstance(self.verdict, InDebt | OverQuota | Blocked | TipBlocked)


def settle_debts(balance: Balance, debts: Sequence[Debt]) -> tuple[tuple[Settlement, ...], Balance, int]:
    """Pay ``debts`` in order from the balance's whole credits; (settlements, balance, still owed)."""
    credits = balance.credits
    settlements = []
    owed = 0
    for debt in debts:
        pay = min(debt.due, credits)
        if pay > 0:
            settlements.append(Settlement(debt.receivable_id, pay, debt.settled + pay))
            credits -= pay
        owed += debt.due - pay
    return tuple(settlements), replace(balance, credits=credits), owed


def _has_cost(cost: Cost) -> bool:
    match cost:
        case Words(words):
            return words > 0
        case Credits(credits):
            return credits > 0
        case Minutes(already, due, _):
            return due > already


def decide_spend(
    balance: Balance,
    debts: Sequence[Debt],
    cost: Cost,
    *,
    now: float = 0.0,
    policy: CreditPolicy | None = None,
    quota: Quota | None = None,
) -> Spend:
    """Apply the spending policy (see the module's docstring) to one spend of ``cost``."""
    settlements, balance, owed = settle_debts(balance, debts)
    if owed and _has_cost(cost):
        return Spend(settlements, balance, InDebt(owed))
    if quota is not None and over_quota(quota.used, quota.limit):
        return Spend(settlements, balance, OverQuota(quota))
    match cost:
        case Words(words):
            charged = charge_words(balance, words, now, policy or CreditPolicy())
            return Spend(settlements, charged.balance if isinstance(charged, Charged) else balance, charged)
        case Credits(credits):
            if (blocked := afford_tip(balance.credits, credits)) is not None:
                return Spend(settlements, balance, blocked)
            return Spend(settlements, replace(balance, credits=balance.credits - credits), CreditsPaid(credits))
        case Minutes(already, due, price):
            return Spend(settlements, balance, plan_charges(already, due, balance.credits, price))


@dataclass(frozen=True, slots=True)
class NeedsCredits:
    """Refused before any work: the asker must hold at least ``required`` credits' worth of words."""

    required: int


def agent_call_gate(
    balance: Balance, owed: int, min_credits: int, quota: Quota | None, now: float, policy: CreditPolicy
) -> InDebt | NeedsCredits | OverQuota | None:
    """Whether the agent may call the model for an asker at all (None: it may).

    Checked before the call, without a lock, so that a refused asker costs no model call; the
    reply's own charge is decided afterwards by :func:`decide_spend`. Owed credits count as
    already spent.
    """
    if owed > balance.credits:
        return InDebt(owed)
    available = max(0, balance.words_available(now, policy) - owed * policy.words_per_credit)
    if available < min_credits * policy.words_per_credit:
        return NeedsCredits(min_credits)
    if quota is not None and over_quota(quota.used, quota.limit):
        return OverQuota(quota)
    return None


def receive_credits(balance: Balance, credits: int) -> Balance:
    """Credits received from someone else (a tip): like a top-up, they re-arm the low-balance warning."""
    return replace(balance, credits=balance.credits + credits, low_balance_warned=False)


def debt_message(owed: int) -> str:
    return (
        f"Spending is blocked: a refunded purchase left {owed} credit(s) owed. "
        "Top up to settle it; the owed credits are taken first."
    )
