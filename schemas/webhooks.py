"""Provider webhooks (Twilio, Meta) parsed into our commands. Pure: no I/O, no clock.

Ingress verifies the signature, then hands the payload here and publishes what comes back.
Meta batches many updates in one delivery; one update we cannot read is reported in
``ParsedDelivery.skipped`` and never fails the others.

Shapes follow the providers' documented examples:

- Twilio Messaging webhooks, ``application/x-www-form-urlencoded``: an inbound message has
  ``MessageSid``, ``From``, ``To``, ``Body`` (``SmsStatus=received``); a status callback has
  ``MessageSid`` and ``MessageStatus`` (``ErrorCode``/``ErrorMessage`` when it failed).
- WhatsApp Cloud API: ``{"object": "whatsapp_business_account", "entry": [{"changes": [{"field":
  "messages", "value": {"metadata": {"phone_number_id"}, "contacts": [...], "messages": [...],
  "statuses": [...]}}]}]}``.
- Instagram messaging: ``{"object": "instagram", "entry": [{"id": <IG account id>, "messaging":
  [{"sender": {"id"}, "recipient": {"id"}, "timestamp", "message": {"mid", "text"}}]}]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from domain.channels import Channel, split_twilio_address
from schemas.commands import ChannelStatusUpdate, InboundChannelMessage, inbound_ids
from schemas.queues import INBOUND_MESSAGE_ACTOR, STATUS_UPDATE_ACTOR
from schemas.storable import scrub_text

WebhookCommand = InboundChannelMessage | ChannelStatusUpdate

META_WHATSAPP_OBJECT = "whatsapp_business_account"
META_INSTAGRAM_OBJECT = "instagram"


class BadPayload(ValueError):
    """A webhook we cannot turn into a command (a missing or malformed field)."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """One update of a delivery that produced no command, and why."""

    reason: str  # unknown_object, malformed, echo, unsupported_event, unsupported_field
    detail: str


@dataclass(slots=True)
class ParsedDelivery:
    commands: list[WebhookCommand] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def actor_for(command: WebhookCommand) -> str:
    return INBOUND_MESSAGE_ACTOR if isinstance(command, InboundChannelMessage) else STATUS_UPDATE_ACTOR


def status_command_id(provider: str, provider_message_id: str, status: str) -> str:
    return f"status:{provider}:{provider_message_id}:{status}"


# --- Twilio ---------------------------------------------------------------------------------------


def _media_placeholder(content_type: str | None) -> str:
    kind = (content_type or "").partition("/")[0].strip().lower()
    return f"[{kind or 'media'}]"


def _twilio_text(form: Mapping[str, str]) -> str:
    body = form.get("Body", "")
    if body:
        return body
    try:
        media = int(form.get("NumMedia") or 0)
    except ValueError:
        media = 0
    if media > 0:
        return " ".join(_media_placeholder(form.get(f"MediaContentType{i}")) for i in range(min(media, 10)))
    if form.get("Latitude") and form.get("Longitude"):
        return f"[location] {form['Latitude']},{form['Longitude']}"
    return ""


def parse_twilio_form(form: Mapping[str, str], now_ms: int) -> WebhookCommand:
    """An inbound message or a status callback from Twilio's form fields; BadPayload if neither."""
    form = {name: scrub_text(value) for name, value in form.items()}  # NUL, lone surrogates -> U+FFFD
    sid = form.get("MessageSid", "").strip()
    if not sid:
        raise BadPayload("MessageSid is missing")
    status = form.get("MessageStatus", "").strip()
    if status and status.lower() != "received":
        return ChannelStatusUpdate(
            command_id=status_command_id("twilio", sid, status),
            provider="twilio",
            provider_message_id=sid,
            status=status,
            error_code=form.get("ErrorCode") or None,
            error_message=form.get("ErrorMessage") or None,
            reported_at_ms=now_ms,
        )
    to, sender = form.get("To", "").strip(), form.get("From", "").strip()
    if not to or not sender:
        raise BadPayload("From and To are required for an inbound message")
    if "Body" not in form and not form.get("NumMedia"):
        raise BadPayload("neither Body nor MessageStatus: not a message webhook")
    channel, address = split_twilio_address(to)
    _, contact = split_twilio_address(sender)
    command_id, message_id = inbound_ids("twilio", sid)
    return InboundChannelMessage(
        command_id=command_id,
        message_id=message_id,
        provider="twilio",
        channel=channel.value,
        address=address,
        contact=contact,
        contact_name=form.get("ProfileName") or None,
        provider_message_id=sid,
        text=_twilio_text(form),
        received_at_ms=now_ms,
    )


# --- Meta: the shapes we read (everything else in a payload is ignored) -----------------------


class _Meta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class WaMetadata(_Meta):
    phone_number_id: str = Field(min_length=1)
    display_phone_number: str | None = None


class WaProfile(_Meta):
    name: str | None = None


class WaContact(_Meta):
    wa_id: str | None = None
    profile: WaProfile | None = None


class WaMessage(_Meta):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)  # type-specific objects

    id: str = Field(min_length=1)
    sender: str = Field(alias="from", min_length=1)
    type: str = "text"


class WaError(_Meta):
    code: int | str | None = None
    title: str | None = None
    message: str | None = None


class WaStatus(_Meta):
    id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    recipient_id: str | None = None
    errors: list[WaError] = Field(default_factory=list)


class IgParty(_Meta):
    id: str = Field(min_length=1)


class IgAttachment(_Meta):
    type: str = "media"


class IgMessage(_Meta):
    mid: str = Field(min_length=1)
    text: str | None = None
    is_echo: bool = False
    is_deleted: bool = False
    is_unsupported: bool = False
    attachments: list[IgAttachment] = Field(default_factory=list)


class IgPostback(_Meta):
    mid: str = Field(min_length=1)
    title: str | None = None
    payload: str | None = None


class IgMessaging(_Meta):
    sender: IgParty
    recipient: IgParty | None = None
    timestamp: int | None = None
    message: IgMessage | None = None
    postback: IgPostback | None = None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'value'}: {first['msg']}"


def _wa_text(message: WaMessage) -> str:
    """A readable text for any WhatsApp message type: the body, a choice's title, or ``[type] …``."""
    kind = message.type
    extra = message.model_extra or {}
    content = _as_dict(extra.get(kind))
    if kind == "text":
        return str(content.get("body", ""))
    if kind == "button":  # a quick-reply button of a template
        return str(content.get("text") or content.get("payload") or "[button]")
    if kind == "interactive":  # a reply button or a list row the contact chose
        reply = _as_dict(content.get("button_reply")) or _as_dict(content.get("list_reply"))
        return str(reply.get("title") or "[interactive]")
    if kind in ("image", "video", "audio", "document", "sticker"):
        caption = content.get("caption") or content.get("filename")
        return f"[{kind}] {caption}" if caption else f"[{kind}]"
    if kind == "location":
        where = ", ".join(str(content[k]) for k in ("name", "address") if content.get(k))
        point = f"{content.get('latitude')},{content.get('longitude')}"
        return f"[location] {where} ({point})" if where else f"[location] {point}"
    if kind == "reaction":
        return f"[reaction] {content.get('emoji', '')}".rstrip()
    if kind == "contacts":
        names = [_as_dict(c.get("name")).get("formatted_name") for c in _as_list(extra.get("contacts"))]
        shown = ", ".join(str(n) for n in names if n)
        return f"[contacts] {shown}" if shown else "[contacts]"
    return f"[{kind}]"


def _whatsapp_value(value: dict[str, Any], now_ms: int, out: ParsedDelivery) -> None:
    try:
        metadata = WaMetadata.model_validate(value.get("metadata"))
    except ValidationError as exc:
        n = len(_as_list(value.get("messages"))) + len(_as_list(value.get("statuses")))
        out.skipped.append(Skipped("malformed", f"metadata: {_first_error(exc)} ({n} updates)"))
        return
    names: dict[str, str] = {}
    for raw in _as_list(value.get("contacts")):
        try:
            contact = WaContact.model_validate(raw)
        except ValidationError:
            continue  # a name is a nicety; the message still goes through
        if contact.wa_id and contact.profile and contact.profile.name:
            names[contact.wa_id] = contact.profile.name
    for raw in _as_list(value.get("messages")):
        try:
            message = WaMessage.model_validate(raw)
        except ValidationError as exc:
            out.skipped.append(Skipped("malformed", f"whatsapp message: {_first_error(exc)}"))
            continue
        command_id, message_id = inbound_ids("meta", message.id)
        out.commands.append(
            InboundChannelMessage(
                command_id=command_id,
                message_id=message_id,
                provider="meta",
                channel=Channel.META_WHATSAPP.value,
                address=metadata.phone_number_id,
                contact=message.sender,
                contact_name=names.get(message.sender),
                provider_message_id=message.id,
                text=_wa_text(message),
                received_at_ms=now_ms,
            )
        )
    for raw in _as_list(value.get("statuses")):
        try:
            status = WaStatus.model_validate(raw)
        except ValidationError as exc:
            out.skipped.append(Skipped("malformed", f"whatsapp status: {_first_error(exc)}"))
            continue
        error = status.errors[0] if status.errors else None
        out.commands.append(
            ChannelStatusUpdate(
                command_id=status_command_id("meta", status.id, status.status),
                provider="meta",
                provider_message_id=status.id,
                status=status.status,
                error_code=str(error.code) if error and error.code is not None else None,
                error_message=(error.title or error.message) if error else None,
                reported_at_ms=now_ms,
            )
        )


def _instagram_event(account_id: str, raw: Any, now_ms: int, out: ParsedDelivery) -> None:
    try:
        event = IgMessaging.model_validate(raw)
    except ValidationError as exc:
        out.skipped.append(Skipped("malformed", f"instagram messaging: {_first_error(exc)}"))
        return
    if event.message is not None:
        message = event.message
        if message.is_echo:  # our own send, reported back
            out.skipped.append(Skipped("echo", message.mid))
            return
        if message.is_deleted:
            out.skipped.append(Skipped("unsupported_event", f"deleted {message.mid}"))
            return
        if message.text:
            text = message.text
        elif message.attachments:
            text = " ".join(f"[{a.type}]" for a in message.attachments)
        else:
            text = "[unsupported]"
        mid = message.mid
    elif event.postback is not None:  # the contact tapped a button we sent
        text = event.postback.title or event.postback.payload or "[postback]"
        mid = event.postback.mid
    else:
        kinds = sorted(k for k in _as_dict(raw) if k not in ("sender", "recipient", "timestamp"))
        out.skipped.append(Skipped("unsupported_event", f"instagram {','.join(kinds) or 'empty'} event"))
        return
    command_id, message_id = inbound_ids("meta", mid)
    out.commands.append(
        InboundChannelMessage(
            command_id=command_id,
            message_id=message_id,
            provider="meta",
            channel=Channel.INSTAGRAM.value,
            address=account_id,
            contact=event.sender.id,
            provider_message_id=mid,
            text=text,
            received_at_ms=now_ms,
        )
    )


def parse_meta_delivery(payload: Any, now_ms: int) -> ParsedDelivery:
    """Every command in one Meta webhook delivery, and what was skipped. Raises BadPayload only
    when the payload is not a JSON object at all."""
    if not isinstance(payload, dict):
        raise BadPayload("the payload is not a JSON object")
    payload = scrub_text(payload)  # NUL and lone surrogates (unstorable) become U+FFFD
    out = ParsedDelivery()
    kind = payload.get("object")
    entries = payload.get("entry")
    if kind not in (META_WHATSAPP_OBJECT, META_INSTAGRAM_OBJECT):
        out.skipped.append(Skipped("unknown_object", f"object={kind!r}"))
        return out
    if not isinstance(entries, list):
        out.skipped.append(Skipped("malformed", "entry is not a list"))
        return out
    for entry in entries:
        if not isinstance(entry, dict):
            out.skipped.append(Skipped("malformed", "an entry is not an object"))
            continue
        if kind == META_WHATSAPP_OBJECT:
            for change in _as_list(entry.get("changes")):
                change = _as_dict(change)
                if change.get("field", "messages") != "messages":
                    out.skipped.append(Skipped("unsupported_field", f"whatsapp field={change.get('field')!r}"))
                    continue
                _whatsapp_value(_as_dict(change.get("value")), now_ms, out)
        else:
            account_id = entry.get("id")
            if not isinstance(account_id, str | int) or not str(account_id):
                n = max(1, len(_as_list(entry.get("messaging"))))
                out.skipped.extend([Skipped("malformed", "instagram entry without id")] * n)
                continue
            for raw in _as_list(entry.get("messaging")):
                _instagram_event(str(account_id), raw, now_ms, out)
            for change in _as_list(entry.get("changes")):  # comments, mentions: not messages
                field_name = _as_dict(change).get("field")
                out.skipped.append(Skipped("unsupported_field", f"instagram field={field_name!r}"))
    return out
