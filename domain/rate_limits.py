"""Rate-limit windows in the operators' format, e.g. ``5/1s,15/10s,500/1h``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.errors import InvalidRateLimitSpec

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_ITEM = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(ms|s|m|h|d)\s*$")


@dataclass(frozen=True, slots=True)
class RateWindow:
    limit: int
    window_ms: int

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_ms}ms"


def parse_rate_limits(spec: str) -> tuple[RateWindow, ...]:
    """Parse a comma-separated list of ``COUNT/[N]UNIT`` windows; an empty spec disables limiting."""
    windows = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        match = _ITEM.fullmatch(item)
        if not match:
            raise InvalidRateLimitSpec(f"bad rate limit {item!r}; expected e.g. 5/1s, 15/10s, 500/1h")
        count, amount, unit = int(match[1]), int(match[2] or 1), match[3]
        if count < 1 or amount < 1:
            raise InvalidRateLimitSpec(f"bad rate limit {item!r}; count and window must be positive")
        windows.append(RateWindow(count, amount * _UNITS_MS[unit]))
    return tuple(windows)
