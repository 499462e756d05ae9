"""JSON nesting is bounded before parsing (domain.json_depth, infra.json_limits)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.json_depth import nests_deeper_than
from infra.json_limits import BoundedJson, JsonLimits, JsonTooDeep, JsonTooLarge, check, loads

ATTACK = "40" + "[" * 65_530  # the finding: one pre-auth frame under the 64 KiB limit


def depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


# Strings full of the characters that matter to the scan: brackets, quotes, backslashes.
tricky_text = st.text(alphabet=st.sampled_from('[]{}"\\/ aé\n\x00'), max_size=8)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(values, st.integers(min_value=0, max_value=12), st.booleans())
def test_the_scan_agrees_with_the_real_depth(value, limit, ensure_ascii):
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    assert nests_deeper_than(text, limit) == (depth(value) > limit)
    assert nests_deeper_than(text.encode("utf-8"), limit) == (depth(value) > limit)


@pytest.mark.parametrize(
    "text",
    [ATTACK[2:], "[" * 40, "]" * 40 + "[" * 40, "[" * 20 + "}" * 20 + "[" * 20, "[" * 39 + '"' + "]" * 39],
    ids=["attack", "unclosed", "closed-first", "mismatched-then-open", "unterminated-string"],
)
def test_unbalanced_brackets_beyond_the_limit_count_as_too_deep(text):
    assert nests_deeper_than(text, 32)


def test_brackets_inside_strings_and_escapes_do_not_count():
    message = json.dumps(["sendMessage", {"roomId": "r", "message": '[[[[{{{{ \\" [[[' * 50}])
    assert not nests_deeper_than(message, 3)
    assert nests_deeper_than(json.dumps([[[[message]]]]), 3)


def test_the_limit_is_inclusive():
    assert not nests_deeper_than("[" * 32 + "]" * 32, 32)
    assert nests_deeper_than("[" * 33 + "]" * 33, 32)
    assert nests_deeper_than('{"a":' * 33 + "1" + "}" * 33, 32)


def test_loads_refuses_before_parsing_and_parses_within_the_limits():
    limits = JsonLimits(max_depth=32, max_bytes=64 * 1024)
    with pytest.raises(JsonTooDeep):
        loads(ATTACK[2:], limits)
    with pytest.raises(JsonTooDeep):
        loads(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, JsonLimits(max_depth=32, max_bytes=None))
    with pytest.raises(JsonTooLarge):
        check("[" + "0," * 40_000 + "0]", limits)
    assert loads(b'\xef\xbb\xbf{"a": [1, {"b": "\xc3\xa9"}]}', limits) == {"a": [1, {"b": "é"}]}
    with pytest.raises(ValueError):  # UTF-16 is not taken: json's own detection would defeat the scan
        loads('{"a": 1}'.encode("utf-16"), limits)


def test_bounded_json_is_a_json_module_for_socketio():
    bounded = BoundedJson(JsonLimits(max_depth=4, max_bytes=None))
    assert bounded.loads('["x", {"y": [1]}]') == ["x", {"y": [1]}]
    assert bounded.dumps({"a": 1}, separators=(",", ":")) == '{"a":1}'
    with pytest.raises(JsonTooDeep):
        bounded.loads("[[[[[1]]]]]")
