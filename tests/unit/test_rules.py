import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidRateLimitSpec, InvalidRoom, RoomForbidden
from domain.rate_limits import RateWindow, parse_rate_limits
from domain.rooms import RoomType, resolve_join, validate_room_id
from domain.sanitize import sanitize_text


def test_default_rate_limits_parse():
    assert parse_rate_limits("5/1s,15/10s,500/1h") == (
        RateWindow(5, 1000), RateWindow(15, 10_000), RateWindow(500, 3_600_000),
    )  # fmt: skip
    assert parse_rate_limits("10/s, 2/250ms") == (RateWindow(10, 1000), RateWindow(2, 250))
    assert parse_rate_limits("") == ()


@pytest.mark.parametrize("spec", ["5", "5/1x", "0/1s", "a/1s", "5/0s", "5/1s;3/2s"])
def test_bad_rate_limits_are_refused(spec):
    with pytest.raises(InvalidRateLimitSpec):
        parse_rate_limits(spec)


def test_room_ids():
    assert validate_room_id("test-room_1.a:b") == "test-room_1.a:b"
    for bad in ("", "x" * 129, "a b", "room/1", "<script>"):
        with pytest.raises(InvalidRoom):
            validate_room_id(bad)


def test_direct_rooms_admit_only_their_two_members():
    assert resolve_join("dm:alice:bob", None, "bob") is RoomType.DIRECT
    assert resolve_join("dm:alice:bob", RoomType.GROUP, "alice") is RoomType.DIRECT
    with pytest.raises(RoomForbidden):
        resolve_join("dm:alice:bob", RoomType.DIRECT, "mallory")
    with pytest.raises(InvalidRoom):
        resolve_join("dm:alice", RoomType.DIRECT, "alice")
    with pytest.raises(InvalidRoom):
        resolve_join("general", RoomType.DIRECT, "alice")


def test_room_types_default_to_group_and_keep_the_original_types():
    assert resolve_join("general", None, "u") is RoomType.GROUP
    assert resolve_join("v1", RoomType.VENDOR, "u") is RoomType.VENDOR


def test_sanitize_makes_html_inert():
    assert sanitize_text("<script>alert(1)</script>hola") == "hola"
    assert sanitize_text('<img src=x onerror="alert(1)">a < b') == "a &lt; b"


@given(st.text(max_size=200))
def test_sanitized_text_never_contains_a_tag(text):
    cleaned = sanitize_text(text)
    assert "<" not in cleaned
