"""Per-minute call billing rules (seed 003): pure arithmetic, no I/O.

A call starts at ``started_ms``. Minute ``k`` (0-based) covers
``[started_ms + k*minute_ms, started_ms + (k+1)*minute_ms)`` and is *started* as
soon as the call reaches its first millisecond, so minute 0 is due the moment the
call starts. Minutes are prepaid: each one is charged when it starts, and a call
whose caller cannot pay the next minute ends where the paid time runs out.

The price of one minute is split without remainder: the platform fee is
``floor(price * fee_pct / 100)`` and the callee gets the rest, so
``to_callee + fee == price`` always.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.errors import DomainError

CALL_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
USER_ID_MAX_CHARS = 128


class CallError(DomainError):
    """A call request that can never be valid (bad id, calling oneself)."""


class UnknownCall(DomainError):
    code = "unknown_call"


class NotAParty(DomainError):
    code = "forbidden"


class CallStateError(DomainError):
    code = "call_state"


def check_call_id(call_id: str) -> str:
    if not CALL_ID_PATTERN.match(call_id):
        raise CallError("callId: 1-128 characters of letters, digits, '_', '.', ':' or '-'")
    return call_id


def check_parties(caller_id: str, callee_id: str) -> None:
    if not callee_id or len(callee_id) > USER_ID_MAX_CHARS or "\x00" in callee_id:
        raise CallError(f"calleeId: 1-{USER_ID_MAX_CHARS} characters")
    if caller_id == callee_id:
        raise CallError("calleeId: you cannot call yourself")


@dataclass(frozen=True, slots=True)
class MinuteSplit:
    price: int
    to_callee: int
    fee: int


def split_minute(price: int, fee_pct: int) -> MinuteSplit:
    """One minute's price as (callee's share, platform fee); the two always sum to ``price``."""
    if price < 0 or not 0 <= fee_pct <= 100:
        raise ValueError("price must be >= 0 and fee_pct within 0..100")
    fee = price * fee_pct // 100
    return MinuteSplit(price, price - fee, fee)


def minutes_started(started_ms: int, at_ms: int, minute_ms: int) -> int:
    """How many minutes have started by ``at_ms`` (at least 1: the first is started with the call)."""
    if minute_ms <= 0:
        raise ValueError("minute_ms must be positive")
    return max(at_ms - started_ms, 0) // minute_ms + 1


def paid_until_ms(started_ms: int, minutes_paid: int, minute_ms: int) -> int:
    """When the prepaid time of ``minutes_paid`` minutes runs out."""
    return started_ms + minutes_paid * minute_ms


@dataclass(frozen=True, slots=True)
class MeterStep:
    """What to do to bring a call's charges up to ``due`` minutes with ``credits`` available."""

    charge_minutes: tuple[int, ...]  # minute indices to charge now, in order
    short: bool  # True when the caller cannot pay every due minute: the call ends


def plan_charges(already_charged: int, due: int, credits: int, price: int) -> MeterStep:
    """Charge each due minute the caller can pay for, in order; stop at the first one they cannot."""
    minutes: list[int] = []
    for minute in range(already_charged, due):
        if price > 0 and credits < price:
            return MeterStep(tuple(minutes), True)
        credits -= price
        minutes.append(minute)
    return MeterStep(tuple(minutes), False)
