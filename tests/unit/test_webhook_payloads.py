"""Provider webhook payloads, shaped like the providers' documented examples, parsed into commands."""

from __future__ import annotations

import copy

import pytest

from schemas.commands import ChannelStatusUpdate, InboundChannelMessage, inbound_ids
from schemas.queues import INBOUND_MESSAGE_ACTOR, STATUS_UPDATE_ACTOR
from schemas.webhooks import BadPayload, actor_for, parse_meta_delivery, parse_twilio_form
from tests.support.webhook_payloads import PHONE_NUMBER_ID, WHATSAPP_DELIVERY

NOW = 1_764_000_000_000

# --- Twilio -------------------------------------------------------------------------------------

TWILIO_WHATSAPP_INBOUND = {
    "SmsMessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
    "NumMedia": "0",
    "ProfileName": "Ana López",
    "MessageType": "text",
    "SmsSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
    "WaId": "5215512345678",
    "SmsStatus": "received",
    "Body": "Hola, ¿tienen envíos a Monterrey?",
    "To": "whatsapp:+14155238886",
    "NumSegments": "1",
    "ReferralNumMedia": "0",
    "MessageSid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
    "AccountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "From": "whatsapp:+5215512345678",
    "ApiVersion": "2010-04-01",
}

TWILIO_SMS_INBOUND = {
    "ToCountry": "US",
    "ToState": "CA",
    "SmsMessageSid": "SM8c2a2b8f1e6e4b7d9a0b5c3d2e1f0a9b",
    "NumMedia": "0",
    "ToCity": "SAN FRANCISCO",
    "FromZip": "94105",
    "SmsSid": "SM8c2a2b8f1e6e4b7d9a0b5c3d2e1f0a9b",
    "FromState": "CA",
    "SmsStatus": "received",
    "FromCity": "SAN FRANCISCO",
    "Body": "STOP",
    "FromCountry": "US",
    "To": "+14155550100",
    "ToZip": "94105",
    "NumSegments": "1",
    "MessageSid": "SM8c2a2b8f1e6e4b7d9a0b5c3d2e1f0a9b",
    "AccountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "From": "+14155550199",
    "ApiVersion": "2010-04-01",
}

TWILIO_STATUS_FAILED = {
    "ErrorCode": "63016",
    "SmsSid": "SMb7c0a2ce80504485a6f653a7110836f5",
    "SmsStatus": "undelivered",
    "MessageStatus": "undelivered",
    "ChannelToAddress": "+5215512345678",
    "To": "whatsapp:+5215512345678",
    "ChannelPrefix": "whatsapp",
    "MessageSid": "SMb7c0a2ce80504485a6f653a7110836f5",
    "AccountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "From": "whatsapp:+14155238886",
    "ApiVersion": "2010-04-01",
    "ChannelInstallSid": "XEXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
}


def test_twilio_whatsapp_inbound_becomes_an_inbound_message():
    cmd = parse_twilio_form(TWILIO_WHATSAPP_INBOUND, NOW)
    command_id, message_id = inbound_ids("twilio", "SM1f0e8ae6ade43cb3c0ce4525424e404f")
    assert cmd == InboundChannelMessage(
        command_id=command_id,
        message_id=message_id,
        provider="twilio",
        channel="twilio_whatsapp",
        address="+14155238886",
        contact="+5215512345678",
        contact_name="Ana López",
        provider_message_id="SM1f0e8ae6ade43cb3c0ce4525424e404f",
        text="Hola, ¿tienen envíos a Monterrey?",
        received_at_ms=NOW,
    )
    assert command_id == "twilio:SM1f0e8ae6ade43cb3c0ce4525424e404f"
    assert actor_for(cmd) == INBOUND_MESSAGE_ACTOR


def test_twilio_sms_inbound_keeps_bare_numbers():
    cmd = parse_twilio_form(TWILIO_SMS_INBOUND, NOW)
    assert isinstance(cmd, InboundChannelMessage)
    assert (cmd.channel, cmd.address, cmd.contact, cmd.contact_name, cmd.text) == (
        "twilio_sms",
        "+14155550100",
        "+14155550199",
        None,
        "STOP",
    )


def test_the_same_twilio_message_always_gets_the_same_ids():
    a = parse_twilio_form(TWILIO_WHATSAPP_INBOUND, NOW)
    b = parse_twilio_form(TWILIO_WHATSAPP_INBOUND, NOW + 5000)
    assert (a.command_id, a.message_id) == (b.command_id, b.message_id)


def test_twilio_media_only_message_gets_a_placeholder_text():
    form = {
        **TWILIO_WHATSAPP_INBOUND,
        "Body": "",
        "NumMedia": "1",
        "MediaContentType0": "image/jpeg",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME",
    }
    assert parse_twilio_form(form, NOW).text == "[image]"


def test_twilio_status_callback_becomes_a_status_update():
    cmd = parse_twilio_form(TWILIO_STATUS_FAILED, NOW)
    assert cmd == ChannelStatusUpdate(
        command_id="status:twilio:SMb7c0a2ce80504485a6f653a7110836f5:undelivered",
        provider="twilio",
        provider_message_id="SMb7c0a2ce80504485a6f653a7110836f5",
        status="undelivered",
        error_code="63016",
        error_message=None,
        reported_at_ms=NOW,
    )
    assert actor_for(cmd) == STATUS_UPDATE_ACTOR


def test_twilio_delivered_status_has_no_error():
    form = {k: v for k, v in TWILIO_STATUS_FAILED.items() if k != "ErrorCode"}
    form["MessageStatus"] = form["SmsStatus"] = "delivered"
    cmd = parse_twilio_form(form, NOW)
    assert isinstance(cmd, ChannelStatusUpdate)
    assert (cmd.status, cmd.error_code, cmd.command_id) == (
        "delivered",
        None,
        "status:twilio:SMb7c0a2ce80504485a6f653a7110836f5:delivered",
    )


def test_message_status_received_is_an_inbound_message():
    cmd = parse_twilio_form({**TWILIO_WHATSAPP_INBOUND, "MessageStatus": "received"}, NOW)
    assert isinstance(cmd, InboundChannelMessage)


@pytest.mark.parametrize("missing", ["MessageSid", "From", "To"])
def test_twilio_inbound_without_a_required_field_is_bad(missing):
    form = {k: v for k, v in TWILIO_WHATSAPP_INBOUND.items() if k != missing}
    with pytest.raises(BadPayload):
        parse_twilio_form(form, NOW)


def test_twilio_form_that_is_neither_message_nor_status_is_bad():
    form = {k: v for k, v in TWILIO_SMS_INBOUND.items() if k not in ("Body", "NumMedia")}
    with pytest.raises(BadPayload):
        parse_twilio_form(form, NOW)


# --- WhatsApp Cloud API (the delivery: tests/support/webhook_payloads.py) ---------------------------


def test_whatsapp_delivery_with_two_messages_and_a_status():
    parsed = parse_meta_delivery(copy.deepcopy(WHATSAPP_DELIVERY), NOW)
    assert parsed.skipped == []
    first, second, status = parsed.commands
    wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    command_id, message_id = inbound_ids("meta", wamid)
    assert first == InboundChannelMessage(
        command_id=command_id,
        message_id=message_id,
        provider="meta",
        channel="meta_whatsapp",
        address=PHONE_NUMBER_ID,
        contact="16505551234",
        contact_name="Sheena Nelson",
        provider_message_id=wamid,
        text="Does it come in another color?",
        received_at_ms=NOW,
    )
    assert isinstance(second, InboundChannelMessage)
    assert (second.contact, second.contact_name, second.text) == ("16315551181", "Kerry Fisher", "[image] This one?")
    assert second.command_id == "meta:wamid.HBgLMTYzMTU1NTExODEVAgASGBQzQUZCMTY0MDc2MUYwNzBDNTY5MAA="
    assert status == ChannelStatusUpdate(
        command_id="status:meta:wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI4QUFERjg0NDEzNDdFODU3MUMA:failed",
        provider="meta",
        provider_message_id="wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI4QUFERjg0NDEzNDdFODU3MUMA",
        status="failed",
        error_code="131047",
        error_message="Re-engagement message",
        reported_at_ms=NOW,
    )
    assert [actor_for(c) for c in parsed.commands] == [INBOUND_MESSAGE_ACTOR] * 2 + [STATUS_UPDATE_ACTOR]


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ({"type": "audio", "audio": {"mime_type": "audio/ogg; codecs=opus", "id": "1"}}, "[audio]"),
        ({"type": "sticker", "sticker": {"mime_type": "image/webp", "id": "2", "animated": False}}, "[sticker]"),
        ({"type": "document", "document": {"filename": "menu.pdf", "id": "3"}}, "[document] menu.pdf"),
        (
            {"type": "location", "location": {"latitude": 19.43, "longitude": -99.13, "name": "Zócalo"}},
            "[location] Zócalo (19.43,-99.13)",
        ),
        ({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}}, "[reaction] 👍"),
        ({"type": "button", "button": {"payload": "YES", "text": "Yes, confirm"}}, "Yes, confirm"),
        (
            {
                "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Sí"}},
            },
            "Sí",
        ),
        (
            {"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "r", "title": "Lunes"}}},
            "Lunes",
        ),
        ({"type": "unsupported", "errors": [{"code": 131051, "title": "Message type unknown"}]}, "[unsupported]"),
    ],
)
def test_whatsapp_non_text_messages_get_readable_placeholders(message, text):
    payload = copy.deepcopy(WHATSAPP_DELIVERY)
    value = payload["entry"][0]["changes"][0]["value"]
    value["messages"] = [{"from": "16505551234", "id": "wamid.Z", "timestamp": "1749416383", **message}]
    value["statuses"] = []
    (cmd,) = parse_meta_delivery(payload, NOW).commands
    assert cmd.text == text


def test_a_broken_whatsapp_update_is_skipped_and_the_rest_kept():
    payload = copy.deepcopy(WHATSAPP_DELIVERY)
    value = payload["entry"][0]["changes"][0]["value"]
    value["messages"].insert(1, {"from": "16505551234", "type": "text", "text": {"body": "no id"}})
    value["statuses"].append({"id": "wamid.S"})  # no status
    payload["entry"][0]["changes"].append({"field": "message_template_status_update", "value": {"event": "APPROVED"}})
    payload["entry"].append({"id": "1", "changes": [{"field": "messages", "value": {"messages": [{}]}}]})  # no metadata
    parsed = parse_meta_delivery(payload, NOW)
    assert len(parsed.commands) == 3
    assert sorted(s.reason for s in parsed.skipped) == ["malformed", "malformed", "malformed", "unsupported_field"]


def test_unknown_object_is_skipped_not_failed():
    parsed = parse_meta_delivery({"object": "page", "entry": [{"id": "1", "messaging": []}]}, NOW)
    assert parsed.commands == []
    assert [s.reason for s in parsed.skipped] == ["unknown_object"]


def test_a_payload_that_is_not_an_object_is_bad():
    with pytest.raises(BadPayload):
        parse_meta_delivery([WHATSAPP_DELIVERY], NOW)


# --- Instagram messaging --------------------------------------------------------------------------

IG_ACCOUNT_ID = "17841405309211844"
# Instagram message ids are long base64 strings; these three differ only at the end.
IG_MID_PREFIX = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDA1MzA5MjExODQ0OjM0MDI4MjM2Njg0MTcx"
IG_MID_PREFIX += "MDMwMTI0NDI1OTU0NjE5NTE4NjcxOTk3"

INSTAGRAM_DELIVERY = {
    "object": "instagram",
    "entry": [
        {
            "id": IG_ACCOUNT_ID,
            "time": 1749416383000,
            "messaging": [
                {
                    "sender": {"id": "1254477691247389"},
                    "recipient": {"id": IG_ACCOUNT_ID},
                    "timestamp": 1749416382000,
                    "message": {
                        "mid": IG_MID_PREFIX + "NDo",
                        "text": "Hi! Is the blue one still available?",
                    },
                },
                {
                    "sender": {"id": IG_ACCOUNT_ID},
                    "recipient": {"id": "1254477691247389"},
                    "timestamp": 1749416390000,
                    "message": {
                        "mid": IG_MID_PREFIX + "NTo",
                        "text": "Yes, it is!",
                        "is_echo": True,
                    },
                },
                {
                    "sender": {"id": "1254477691247389"},
                    "recipient": {"id": IG_ACCOUNT_ID},
                    "timestamp": 1749416395000,
                    "message": {
                        "mid": IG_MID_PREFIX + "Njo",
                        "attachments": [
                            {
                                "type": "image",
                                "payload": {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1"},
                            }
                        ],
                    },
                },
                {
                    "sender": {"id": "1254477691247389"},
                    "recipient": {"id": IG_ACCOUNT_ID},
                    "timestamp": 1749416399000,
                    "read": {"mid": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDA1MzA5MjExODQ0Ojk3NTo"},
                },
            ],
        }
    ],
}


def test_instagram_delivery_skips_echoes_and_reads():
    parsed = parse_meta_delivery(copy.deepcopy(INSTAGRAM_DELIVERY), NOW)
    first, second = parsed.commands
    mid = INSTAGRAM_DELIVERY["entry"][0]["messaging"][0]["message"]["mid"]
    command_id, message_id = inbound_ids("meta", mid)
    assert first == InboundChannelMessage(
        command_id=command_id,
        message_id=message_id,
        provider="meta",
        channel="instagram",
        address=IG_ACCOUNT_ID,
        contact="1254477691247389",
        provider_message_id=mid,
        text="Hi! Is the blue one still available?",
        received_at_ms=NOW,
    )
    assert (second.channel, second.text) == ("instagram", "[image]")
    assert [s.reason for s in parsed.skipped] == ["echo", "unsupported_event"]


def test_instagram_postback_is_the_button_title():
    payload = copy.deepcopy(INSTAGRAM_DELIVERY)
    payload["entry"][0]["messaging"] = [
        {
            "sender": {"id": "1254477691247389"},
            "recipient": {"id": IG_ACCOUNT_ID},
            "timestamp": 1749416399000,
            "postback": {"mid": "aWdfZAG1fpostback", "title": "Talk to a human", "payload": "HUMAN"},
        }
    ]
    (cmd,) = parse_meta_delivery(payload, NOW).commands
    assert (cmd.text, cmd.provider_message_id, cmd.command_id) == (
        "Talk to a human",
        "aWdfZAG1fpostback",
        "meta:aWdfZAG1fpostback",
    )


def test_instagram_message_without_sender_is_skipped():
    payload = copy.deepcopy(INSTAGRAM_DELIVERY)
    del payload["entry"][0]["messaging"][0]["sender"]
    parsed = parse_meta_delivery(payload, NOW)
    assert len(parsed.commands) == 1
    assert sorted(s.reason for s in parsed.skipped) == ["echo", "malformed", "unsupported_event"]


# --- Text the database cannot store, in signed provider payloads -------------------------------------


def test_nul_and_lone_surrogates_in_provider_text_become_replacement_characters():
    form = {**TWILIO_WHATSAPP_INBOUND, "Body": "hola\x00mundo \ud800", "ProfileName": "Ana\x00"}
    command = parse_twilio_form(form, NOW)
    assert isinstance(command, InboundChannelMessage)
    assert (command.text, command.contact_name) == ("hola\ufffdmundo \ufffd", "Ana\ufffd")
    delivery = copy.deepcopy(WHATSAPP_DELIVERY)
    value = delivery["entry"][0]["changes"][0]["value"]
    value["messages"][0]["text"]["body"] = "color\x00?"
    value["contacts"][0]["profile"]["name"] = "Sheena\ud83d"
    parsed = parse_meta_delivery(delivery, NOW)
    first = next(c for c in parsed.commands if isinstance(c, InboundChannelMessage))
    assert first.text == "color\ufffd?" and first.contact_name == "Sheena\ufffd"
    for command in parsed.commands:
        assert "\x00" not in command.model_dump_json()
