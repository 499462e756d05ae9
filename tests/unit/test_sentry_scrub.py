"""What leaves for Sentry carries no message text, model output or phone number."""

from infra.sentry import REDACTED, scrub_event, scrub_text


def test_texts_under_known_keys_are_redacted_at_any_depth():
    event = {
        "contexts": {"dramatiq": {"args": [{"command_id": "msg:1", "text": "hola mundo", "room_id": "r1"}]}},
        "extra": {"payload": {"Body": "mi pedido", "From": "whatsapp:+5215512345678", "user_id": "u1"}},
        "tags": {"service": "workers"},
    }
    scrubbed = scrub_event(event)
    assert scrubbed["contexts"]["dramatiq"]["args"][0] == {"command_id": "msg:1", "text": REDACTED, "room_id": "r1"}
    assert scrubbed["extra"]["payload"] == {"Body": REDACTED, "From": REDACTED, "user_id": "u1"}
    assert scrubbed["tags"] == {"service": "workers"}


def test_texts_inside_strings_and_phone_numbers_are_redacted():
    line = "Failed to process message chat_send_message({'command_id': 'msg:1', 'message': 'llámame al 612 345 678'})"
    assert scrub_text(line) == (
        "Failed to process message chat_send_message({'command_id': 'msg:1', 'message': '[redacted]'})"
    )
    assert scrub_text('{"text": "say \\"hi\\"", "n": 1}') == '{"text": "[redacted]", "n": 1}'
    assert scrub_text("from +34 612 34 56 78 and (555) 123-4567") == "from [phone] and [phone]"


def test_identifiers_and_code_locations_survive():
    kept = "uuid 3f2a1b4c-0d9e-4f11-8a7b-1234567890ab at workers/chat.py line 42"
    assert scrub_text(kept) == kept
