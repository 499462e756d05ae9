"""Messaging channels (WhatsApp, SMS, Instagram): addresses, conversation rooms, delivery status."""

from __future__ import annotations

import uuid
from enum import StrEnum

from domain.errors import DomainError


class Channel(StrEnum):
    TWILIO_WHATSAPP = "twilio_whatsapp"
    TWILIO_SMS = "twilio_sms"
    META_WHATSAPP = "meta_whatsapp"
    INSTAGRAM = "instagram"

    @property
    def provider(self) -> str:
        return "twilio" if self in (Channel.TWILIO_WHATSAPP, Channel.TWILIO_SMS) else "meta"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENDING: 1,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
}

# Provider vocabularies mapped onto ours (Twilio's MessageStatus and Meta's statuses[].status).
_PROVIDER_STATUS = {
    "accepted": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.SENDING,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
    "undelivered": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}


class UnknownStatus(DomainError):
    pass


def normalize_status(provider_status: str) -> DeliveryStatus:
    try:
        return _PROVIDER_STATUS[provider_status.lower()]
    except KeyError:
        raise UnknownStatus(f"unknown delivery status {provider_status!r}") from None


def advance_status(current: DeliveryStatus, reported: DeliveryStatus) -> DeliveryStatus | None:
    """The status after a provider report, or None if the report changes nothing.

    Callbacks arrive out of order: a late ``sent`` never undoes ``delivered``.
    ``failed`` is final, and so is ``read``.
    """
    if current in (DeliveryStatus.FAILED, DeliveryStatus.READ) or current == reported:
        return None
    if reported is DeliveryStatus.FAILED:
        return reported
    return reported if _RANK[reported] > _RANK[current] else None


def split_twilio_address(value: str) -> tuple[Channel, str]:
    """``whatsapp:+14155238886`` is WhatsApp through Twilio; a bare number is SMS."""
    if value.startswith("whatsapp:"):
        return Channel.TWILIO_WHATSAPP, value.removeprefix("whatsapp:")
    return Channel.TWILIO_SMS, value


def twilio_address(channel: Channel, number: str) -> str:
    return f"whatsapp:{number}" if channel is Channel.TWILIO_WHATSAPP else number


CONVERSATION_PREFIX = "conv:"


def conversation_room(tenant_id: str, conversation_id: str) -> str:
    return f"{CONVERSATION_PREFIX}{tenant_id}:{conversation_id}"


def conversation_room_tenant(room_id: str) -> str | None:
    """The tenant that owns a ``conv:<tenant>:<conversation uuid>`` room, None for other rooms,
    or "" for a malformed conversation room name."""
    if not room_id.startswith(CONVERSATION_PREFIX):
        return None
    parts = room_id.split(":")
    if len(parts) != 3 or not parts[1]:
        return ""
    try:
        uuid.UUID(parts[2])
    except ValueError:
        return ""
    return parts[1]
