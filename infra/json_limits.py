"""The one JSON loader for what arrives from outside: size and nesting are bounded before parsing.

Every socket packet, HTTP body and webhook body goes through :func:`check` (or :func:`loads`),
so no document can drive a recursive parser into the stack, whatever the recursion limit.
Refusals are :class:`JsonLimitError`, a ``ValueError``: callers that already answer bad JSON
keep doing so, and those that want a precise answer (HTTP 400, a closed socket) catch it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from domain.json_depth import nests_deeper_than

DEFAULT_MAX_DEPTH = 32  # our protocol nests 3 deep, provider webhooks about 10


class JsonLimitError(ValueError):
    """A JSON document refused before parsing; ``code`` is the API error code."""

    code = "bad_request"
    status = 400


class JsonTooDeep(JsonLimitError):
    code = "json_too_deep"


class JsonTooLarge(JsonLimitError):
    code = "json_too_large"
    status = 413


@dataclass(frozen=True, slots=True)
class JsonLimits:
    max_depth: int = DEFAULT_MAX_DEPTH
    max_bytes: int | None = 1024 * 1024  # characters when a str is checked; None: the caller bounds the size


def check(data: str | bytes | bytearray, limits: JsonLimits) -> None:
    """Raise :class:`JsonTooLarge` or :class:`JsonTooDeep` unless ``data`` is within ``limits``."""
    if limits.max_bytes is not None and len(data) > limits.max_bytes:
        raise JsonTooLarge(f"JSON document larger than {limits.max_bytes} bytes")
    if nests_deeper_than(bytes(data) if isinstance(data, bytearray) else data, limits.max_depth):
        raise JsonTooDeep(f"JSON nested deeper than {limits.max_depth} levels (or its brackets do not balance)")


def loads(data: str | bytes | bytearray, limits: JsonLimits, **kwargs: Any) -> Any:
    """``json.loads`` after :func:`check`. Bytes must be UTF-8 (RFC 8259; a BOM is allowed):
    json's own detection of UTF-16/32 would defeat the byte scan."""
    check(data, limits)
    text = data if isinstance(data, str) else bytes(data).decode("utf-8-sig")
    return json.loads(text, **kwargs)


class BoundedJson:
    """A stand-in for a json module (``loads``/``dumps``) for libraries that take one, such as
    python-socketio's ``json=`` argument; ``loads`` checks ``limits`` first, then calls ``base``."""

    def __init__(self, limits: JsonLimits, base: Any = json) -> None:
        self.limits = limits
        self._base = base

    def loads(self, s: str | bytes, *args: Any, **kwargs: Any) -> Any:
        check(s, self.limits)
        return self._base.loads(s, *args, **kwargs)

    def dumps(self, obj: Any, *args: Any, **kwargs: Any) -> str:
        return self._base.dumps(obj, *args, **kwargs)
