"""BEZ deposits into credits: 1 BEZ = 1 credit, exactly, with fractions carried per user."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation

_EXACT = Context(prec=200)  # uint256 has 78 digits; never round


@dataclass(frozen=True, slots=True)
class DepositSplit:
    credits: int  # whole credits to grant now
    carry: int  # base units left over, kept for the next deposit


def split_deposit(carry: int, amount: int, decimals: int) -> DepositSplit:
    """Add ``amount`` token base units to a user's ``carry`` and take out every whole token."""
    if carry < 0 or amount < 0 or decimals < 0:
        raise ValueError("carry, amount and decimals are never negative")
    unit = 10**decimals
    whole, rest = divmod(carry + amount, unit)
    return DepositSplit(whole, rest)


def format_units(amount: int, decimals: int) -> str:
    """``amount`` base units as an exact decimal string of tokens (no float rounding)."""
    if decimals == 0:
        return str(amount)
    text = format(Decimal(amount).scaleb(-decimals, _EXACT), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_units(text: str, decimals: int) -> int:
    """An exact decimal string of tokens (``"1.5"``) as base units; refuses more digits than fit."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"not a non-negative amount: {text!r}")
    units = value.scaleb(decimals, _EXACT)
    if units != units.to_integral_value():
        raise ValueError(f"{text!r} has more than {decimals} decimals")
    return int(units)
