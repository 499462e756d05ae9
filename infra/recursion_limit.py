"""Keep the interpreter's recursion limit at a value the C stack can hold, whatever a dependency sets.

``py_ecc`` (imported by ``eth_account``) calls ``sys.setrecursionlimit(100000)`` and py-evm
12,288. C code that recurses under that limit, such as the json parser on a deeply nested
document, then overflows the C stack and the process dies with SIGSEGV instead of raising
``RecursionError``. Every process entry calls :func:`pin_recursion_limit` once its imports are
done; from then on a dependency can lower the limit but not raise it above the pin.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

SAFE_RECURSION_LIMIT = 1000  # CPython's default: deep enough for our code, far from the 8 MiB stack's end

_original_setrecursionlimit: Callable[[int], None] = sys.setrecursionlimit


def pin_recursion_limit(limit: int = SAFE_RECURSION_LIMIT) -> int:
    """Set the recursion limit to ``limit`` and cap later ``sys.setrecursionlimit`` calls at it
    (libraries imported lazily run theirs then). Returns the limit now in force."""

    def capped(requested: int) -> None:
        _original_setrecursionlimit(min(requested, limit))

    capped.__doc__ = f"sys.setrecursionlimit, capped at {limit} by infra.recursion_limit."
    sys.setrecursionlimit = capped
    _original_setrecursionlimit(limit)
    return sys.getrecursionlimit()
