"""What PostgreSQL can store: text without NUL or lone surrogates, integers within int64.

Input that breaks these rules used to travel until asyncpg refused it (a 500, or a command
retried until dead-lettered); the edges refuse it instead, with these checks.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import Field

INT64_MAX = 2**63 - 1
# Money in minor units (cents): ten billion in major units is more than any one payment.
MAX_MINOR_UNITS = 10**12
# Epoch seconds up to 9999-12-31T23:59:59Z (what datetime and PostgreSQL timestamps can hold).
MAX_EPOCH_S = 253_402_300_799
MAX_EPOCH_MS = MAX_EPOCH_S * 1000

Int64 = Annotated[int, Field(ge=-INT64_MAX, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
MinorUnits = Annotated[int, Field(ge=0, le=MAX_MINOR_UNITS)]
EpochS = Annotated[int, Field(ge=0, le=MAX_EPOCH_S)]
EpochMs = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS)]

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL; UTF-16 surrogates (lone ones cannot be UTF-8)


def unstorable_text(value: str) -> bool:
    return _UNSTORABLE.search(value) is not None


def find_unstorable(value: Any, where: str = "") -> str | None:
    """Where in a JSON-like value (keys included) text PostgreSQL cannot store sits, or None."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if unstorable_text(item):
                return at or "value"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{at}.{key}" if at else str(key)
                if isinstance(key, str) and unstorable_text(key):
                    return at or "key"
                stack.append((child, name))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{at}[{i}]") for i, child in enumerate(item))
    return None


def check_storable(value: Any) -> Any:
    """A pydantic before-validator: refuse NUL and lone surrogates anywhere in the input."""
    if (where := find_unstorable(value)) is not None:
        raise ValueError(f"{where}: text must not contain NUL or unpaired surrogate characters")
    return value


def find_unbounded_number(value: Any, where: str = "") -> str | None:
    """Where in a JSON-like value a number is not finite or lies beyond int64, or None."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not -INT64_MAX <= item <= INT64_MAX:
                return at or "value"
        elif isinstance(item, float):
            if not math.isfinite(item) or abs(item) > INT64_MAX:
                return at or "value"
        elif isinstance(item, dict):
            stack.extend((child, f"{at}.{key}" if at else str(key)) for key, child in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{at}[{i}]") for i, child in enumerate(item))
    return None


def scrub_text(value: Any) -> Any:
    """A copy of a JSON-like value with NUL and lone surrogates replaced by U+FFFD.

    For signed provider payloads: refusing them would make the provider retry forever, and
    dropping a contact's message for one odd character would lose it.
    """
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {scrub_text(k): scrub_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_text(v) for v in value]
    return value
