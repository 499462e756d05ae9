"""Provider webhook payloads shaped like the providers' documented examples."""

from __future__ import annotations

PHONE_NUMBER_ID = "106540352242922"

WHATSAPP_DELIVERY = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                        "contacts": [
                            {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"},
                            {"profile": {"name": "Kerry Fisher"}, "wa_id": "16315551181"},
                        ],
                        "messages": [
                            {
                                "from": "16505551234",
                                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                                "timestamp": "1749416383",
                                "type": "text",
                                "text": {"body": "Does it come in another color?"},
                            },
                            {
                                "from": "16315551181",
                                "id": "wamid.HBgLMTYzMTU1NTExODEVAgASGBQzQUZCMTY0MDc2MUYwNzBDNTY5MAA=",
                                "timestamp": "1749416390",
                                "type": "image",
                                "image": {
                                    "caption": "This one?",
                                    "mime_type": "image/jpeg",
                                    "sha256": "SSOHHHPZJNf7B/dVsqPM+mMmFgOV5QRxBKhwDEnaTmA=",
                                    "id": "1003383421387256",
                                },
                            },
                        ],
                        "statuses": [
                            {
                                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI4QUFERjg0NDEzNDdFODU3MUMA",
                                "status": "failed",
                                "timestamp": "1749416400",
                                "recipient_id": "16505551234",
                                "errors": [
                                    {
                                        "code": 131047,
                                        "title": "Re-engagement message",
                                        "message": "Re-engagement message",
                                        "error_data": {"details": "More than 24 hours have passed."},
                                        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
                                    }
                                ],
                            }
                        ],
                    },
                    "field": "messages",
                }
            ],
        }
    ],
}
