"""The gatekeeper rules: how words turn into whole prepaid credits.

A balance holds whole ``credits`` plus the unused words of the last opened
credit (``words_left``). A message first spends ``words_left``; any remainder
opens as many new credits as it needs, charged at once. A user who cannot pay
spends everything they have, and the message still goes out if the uncovered
rest is within the grace allowance; otherwise nothing is charged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from domain.errors import InvalidAmount


@dataclass(frozen=True, slots=True)
class CreditPolicy:
    words_per_credit: int = 1000
    grace_words: int = 50
    word_window_ttl_s: int = 86_400

    def __post_init__(self) -> None:
        if self.words_per_credit < 1 or self.grace_words < 0 or self.word_window_ttl_s < 1:
            raise ValueError("invalid credit policy")


@dataclass(frozen=True, slots=True)
class Balance:
    """A user's spendable state. ``words_expire_at`` is a UNIX time in seconds."""

    credits: int = 0
    words_left: int = 0
    words_expire_at: float | None = None
    low_balance_warned: bool = False

    def live_words_left(self, now: float) -> int:
        """Words left in the open credit, or 0 once its window has expired."""
        if self.words_expire_at is not None and now >= self.words_expire_at:
            return 0
        return self.words_left

    def words_available(self, now: float, policy: CreditPolicy) -> int:
        return self.credits * policy.words_per_credit + self.live_words_left(now)


@dataclass(frozen=True, slots=True)
class Charged:
    """The message goes out. ``credits_charged`` leave the user's account."""

    words: int
    credits_charged: int
    free_words: int
    balance: Balance
    warn_low_balance: bool


@dataclass(frozen=True, slots=True)
class Blocked:
    """The message is refused and nothing is charged."""

    words: int
    required: int
    credits: int
    words_left: int


ChargeOutcome = Charged | Blocked


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def charge_words(balance: Balance, words: int, now: float, policy: CreditPolicy) -> ChargeOutcome:
    """Apply the gatekeeper rules to a message of ``words`` words sent at ``now``."""
    if words < 0:
        raise InvalidAmount("word count cannot be negative")
    words_left = balance.live_words_left(now)
    if words == 0:
        return Charged(0, 0, 0, replace(balance, words_left=words_left), warn_low_balance=False)

    wpc = policy.words_per_credit
    if words <= words_left:
        credits_charged, free_words = 0, 0
        credits, new_words_left = balance.credits, words_left - words
    else:
        remainder = words - words_left
        needed = _ceil_div(remainder, wpc)
        if needed <= balance.credits:
            credits_charged, free_words = needed, 0
            credits, new_words_left = balance.credits - needed, needed * wpc - remainder
        else:
            uncovered = remainder - balance.credits * wpc
            if uncovered > policy.grace_words:
                return Blocked(words, needed, balance.credits, words_left)
            credits_charged, free_words = balance.credits, uncovered
            credits, new_words_left = 0, 0

    low = credits * wpc + new_words_left < wpc
    warn = low and not balance.low_balance_warned
    new_balance = Balance(
        credits=credits,
        words_left=new_words_left,
        words_expire_at=now + policy.word_window_ttl_s if new_words_left else None,
        low_balance_warned=balance.low_balance_warned or warn,
    )
    return Charged(words, credits_charged, free_words, new_balance, warn)


def top_up(balance: Balance, credits: int) -> Balance:
    """Add credits; a top-up re-arms the low-balance warning."""
    if credits <= 0:
        raise InvalidAmount("a top-up must add at least one credit")
    return replace(balance, credits=balance.credits + credits, low_balance_warned=False)


def set_credits(balance: Balance, credits: int) -> tuple[Balance, int]:
    """Set the balance to exactly ``credits``; returns the new balance and the signed delta."""
    if credits < 0:
        raise InvalidAmount("credits cannot be negative")
    delta = credits - balance.credits
    warned = balance.low_balance_warned and delta <= 0
    return replace(balance, credits=credits, low_balance_warned=warned), delta
