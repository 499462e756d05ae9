import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidRateLimitSpec, InvalidRoom, RoomForbidden
from domain.rate_limits import RateWindow, parse_rate_limits
from domain.rooms import RoomType, resolve_join, validate_room_id
from domain.sanitize import sanitize_text


def test_default_rate_limits_parse():
    assert parse_rate_limits("5/1s,15/10s,500/1h") == (
        RateWindow(5, 1000),
        RateWindow(15, 10_000),
        RateWindow(500, 3_600_000),
    )
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


def test_conversation_rooms_admit_only_the_tenants_operators_and_admins():
    import uuid

    from domain.channels import conversation_room

    room = conversation_room("acme", str(uuid.uuid4()))
    assert resolve_join(room, None, "op1", operator_of="acme") is RoomType.CONVERSATION
    assert resolve_join(room, None, "boss", is_admin=True) is RoomType.CONVERSATION
    with pytest.raises(RoomForbidden):
        resolve_join(room, None, "op2", operator_of="other")
    with pytest.raises(RoomForbidden):
        resolve_join(room, RoomType.GROUP, "someone")
    with pytest.raises(InvalidRoom):
        resolve_join("conv:acme:not-a-uuid", None, "op1", operator_of="acme")


def test_delivery_status_only_moves_forward():
    from domain.channels import DeliveryStatus as S
    from domain.channels import advance_status, normalize_status

    assert advance_status(S.QUEUED, S.SENT) is S.SENT
    assert advance_status(S.DELIVERED, S.SENT) is None  # a late callback never undoes progress
    assert advance_status(S.READ, S.FAILED) is None
    assert advance_status(S.SENT, S.FAILED) is S.FAILED
    assert advance_status(S.FAILED, S.DELIVERED) is None
    assert normalize_status("undelivered") is S.FAILED and normalize_status("READ") is S.READ


def test_twilio_addresses():
    from domain.channels import Channel, split_twilio_address, twilio_address

    assert split_twilio_address("whatsapp:+14155238886") == (Channel.TWILIO_WHATSAPP, "+14155238886")
    assert split_twilio_address("+14155238886") == (Channel.TWILIO_SMS, "+14155238886")
    assert twilio_address(Channel.TWILIO_WHATSAPP, "+1") == "whatsapp:+1"


def test_agent_mentions():
    from domain.agent import mentions

    assert mentions("hola @AgenteIA, ¿qué tal?", "@AgenteIA")
    assert mentions("@agenteia ayuda", "@AgenteIA")
    assert not mentions("hola @AgenteIAX", "@AgenteIA")
    assert not mentions("mail me: x@AgenteIA", "@AgenteIA")
    assert not mentions("AgenteIA sin arroba", "@AgenteIA")


def test_agent_context_keeps_the_last_messages_and_roles():
    from domain.agent import context_messages

    history = [{"userId": f"u{i}", "username": f"U{i}", "message": f"m{i}", "kind": "user"} for i in range(5)]
    history.append({"userId": "agent", "username": "AgenteIA", "message": "respuesta", "kind": "ai"})
    msgs = context_messages("sys", history, "agent", limit=3)
    assert msgs == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "U3: m3"},
        {"role": "user", "content": "U4: m4"},
        {"role": "assistant", "content": "respuesta"},
    ]
