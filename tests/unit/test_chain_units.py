"""BEZ amounts: exact splitting into whole credits and carried base units, exact formatting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.chain import format_units, parse_units, split_deposit


def test_split_carries_fractions_until_they_make_a_credit():
    unit = 10**18
    first = split_deposit(0, unit // 2, 18)
    second = split_deposit(first.carry, unit * 3 // 4, 18)
    assert (first.credits, second.credits, second.carry) == (0, 1, unit // 4)
    assert split_deposit(0, 7, 0).credits == 7  # a token without decimals


def test_split_refuses_negative_amounts():
    with pytest.raises(ValueError):
        split_deposit(0, -1, 18)


@given(st.lists(st.integers(min_value=0, max_value=2**256 - 1), max_size=20), st.integers(min_value=0, max_value=30))
def test_every_base_unit_is_accounted_for(amounts, decimals):
    carry, credited = 0, 0
    for amount in amounts:
        split = split_deposit(carry, amount, decimals)
        assert 0 <= split.carry < 10**decimals
        credited += split.credits
        carry = split.carry
    assert credited * 10**decimals + carry == sum(amounts)


@given(st.integers(min_value=0, max_value=2**256 - 1), st.integers(min_value=0, max_value=77))
def test_format_and_parse_are_exact_inverses(amount, decimals):
    assert parse_units(format_units(amount, decimals), decimals) == amount


def test_format_and_parse_examples():
    assert format_units(125 * 10**17, 18) == "12.5"
    assert format_units(10**18, 18) == "1"
    assert format_units(0, 18) == "0"
    assert format_units(1, 18) == "0.000000000000000001"
    assert parse_units("0.5", 18) == 5 * 10**17
    for bad in ("-1", "1.0000000000000000001", "nan", "inf", "abc", ""):
        with pytest.raises(ValueError):
            parse_units(bad, 18)


def test_the_token_abi_in_code_matches_the_compiled_contract():
    """infra.chain.TOKEN_ABI is what a real node is called with; it must agree with infra/contracts/BEZ.json."""
    from infra.chain import TOKEN_ABI, artifact

    compiled = {(e["type"], e["name"]): e for e in artifact()["abi"] if "name" in e}
    for entry in TOKEN_ABI:
        twin = compiled[(entry["type"], entry["name"])]
        assert [(i["type"], i.get("indexed")) for i in entry["inputs"]] == [
            (i["type"], i.get("indexed")) for i in twin["inputs"]
        ]
        assert [o["type"] for o in entry.get("outputs", [])] == [o["type"] for o in twin.get("outputs", [])]
