"""How deeply a JSON text nests, decided without parsing it.

A recursive JSON parser (CPython's json, pydantic's) descends once per ``[`` or ``{``: a hostile
document can exhaust the stack before the parser ever reports an error. This check runs first.

Only structural brackets count: string literals, with their escapes, are skipped. The answer is
exact for valid JSON. For invalid JSON it errs on the safe side: brackets that do not balance
count as too deep, because a parser may recurse to their full depth before it finds the error.
The scanning is done by ``str``/``bytes`` methods and regular expressions (C speed); a Python loop
runs at most ``limit`` rounds. UTF-8 bytes may be scanned as they are: no byte of a multi-byte
character is ASCII, so no ``"``, ``\\`` or bracket can hide inside one.
"""

from __future__ import annotations

import re

# A string literal, unrolled ("normal* (escape normal*)*") so each run of plain characters is one step.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_STRING_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_NOT_BRACKET_BYTES = re.compile(rb"[^\[\]{}]+")


def bracket_count(text: str | bytes) -> int:
    """Opening brackets anywhere in ``text``, strings included: an upper bound of its depth."""
    if isinstance(text, str):
        return text.count("[") + text.count("{")
    return text.count(b"[") + text.count(b"{")


def nests_deeper_than(text: str | bytes, limit: int) -> bool:
    """True if ``text`` nests arrays and objects more than ``limit`` deep, or its brackets do not balance.

    Costs two ``count`` calls when ``text`` has at most ``limit`` opening brackets in all (the
    common case: a chat packet); otherwise a scan of its structural brackets.
    """
    if bracket_count(text) <= limit:
        return False
    if isinstance(text, str):
        brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    else:
        brackets = _NOT_BRACKET_BYTES.sub(b"", _STRING_BYTES.sub(b"", text)).decode("ascii")
    brackets = brackets.replace("{", "[").replace("}", "]")
    # One round removes every innermost pair: the brackets balance within ``limit`` nesting levels
    # exactly when ``limit`` rounds leave nothing. (Mismatched pairs such as ``[}`` count as pairs:
    # a parser stops there, no deeper.)
    for _ in range(limit):
        if not brackets:
            return False
        reduced = brackets.replace("[]", "")
        if len(reduced) == len(brackets):
            return True  # brackets remain, none of them a pair: unbalanced
        brackets = reduced
    return bool(brackets)
