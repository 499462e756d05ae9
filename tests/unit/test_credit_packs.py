"""Credit-pack configuration and refund arithmetic (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.credit_packs import InvalidPackSpec, credits_to_reverse, parse_credit_packs, split_reversal


def test_packs_and_variants_parse():
    packs = parse_credit_packs("pack_10:10:500:USD, big:200:6000:eur", "123:pack_10,456:big")
    assert [(p.pack_id, p.credits, p.amount, p.currency) for p in packs.packs] == [
        ("pack_10", 10, 500, "usd"),
        ("big", 200, 6000, "eur"),
    ]
    assert packs.for_variant("456").pack_id == "big"
    assert packs.for_variant("789") is None and packs.get("nope") is None


@pytest.mark.parametrize(
    ("packs", "variants"),
    [
        ("pack:10:500", ""),  # no currency
        ("pack:0:500:usd", ""),
        ("pack:10:-5:usd", ""),
        ("pack:ten:500:usd", ""),
        ("pa ck:10:500:usd", ""),
        ("pack:10:500:dollars", ""),
        ("pack:10:500:usd,pack:20:900:usd", ""),  # defined twice
        ("pack:10:500:usd", "123:other"),  # a variant of an unknown pack
        ("pack:10:500:usd", ":pack"),
    ],
)
def test_bad_pack_specs_are_refused(packs, variants):
    with pytest.raises(InvalidPackSpec):
        parse_credit_packs(packs, variants)


def test_settings_refuse_bad_packs_at_start_up():
    from pydantic import ValidationError

    from infra.settings import Settings

    with pytest.raises(ValidationError):
        Settings(jwt_secret="x" * 16, admin_token="y" * 16, credit_packs="broken")


@given(st.integers(1, 10_000), st.integers(1, 100_000), st.integers(0, 200_000))
def test_reversal_never_exceeds_the_pack_and_grows_with_the_refund(credits, paid, refunded):
    taken = credits_to_reverse(credits, paid, refunded)
    assert 0 <= taken <= credits
    assert credits_to_reverse(credits, paid, refunded + 1) >= taken
    if refunded >= paid:
        assert taken == credits


@given(st.integers(0, 1000), st.integers(0, 1000))
def test_a_reversal_is_split_between_the_balance_and_a_receivable(owed, balance):
    taken, short = split_reversal(owed, balance)
    assert taken + short == owed and 0 <= taken <= balance and short >= 0
