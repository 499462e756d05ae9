"""Read a batch export (JSON Lines) into commands for ``python -m scripts.replay --from-file``.

Each line is one of:

- a command: ``{"queue": "chat", "actor": "chat_send_message", "command": {...}}``, checked against
  the registry of actors and the model the actor validates (``schemas/actors.py``);
- a captured provider webhook: ``{"webhook": "twilio"|"meta"|"stripe"|"lemonsqueezy", "body": ...}``
  (optionally ``"received_at_ms"``), turned into commands by the same functions ingress uses. The
  body is the provider's JSON (an object, or the raw text); for Twilio, the form as an object of
  strings or the url-encoded text. Signatures are not checked: the operator vouches for the file.

A bad line raises :class:`BadLine` with the reason; the caller reports it with its number and
goes on with the rest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError

from ingress.webhooks.billing import lemonsqueezy_command, stripe_actor, stripe_command
from schemas.actors import UnknownActor, validate_command
from schemas.base import Command
from schemas.queues import BILLING_QUEUE, CHAT_QUEUE, LEMONSQUEEZY_ORDER_ACTOR, capability_of
from schemas.webhooks import actor_for, parse_meta_delivery, parse_twilio_form


class BadLine(ValueError):
    """A line that yields no command; the message says why."""


@dataclass(frozen=True, slots=True)
class Job:
    """One command to publish: ``payload`` is the command as its actor receives it."""

    queue: str
    actor: str
    payload: dict[str, Any]

    @property
    def command_id(self) -> str:
        return self.payload["command_id"]

    @property
    def command_type(self) -> str:
        return str(self.payload.get("type", "unknown"))


Routed = tuple[str, str, Command]


def _json_body(body: Any) -> Any:
    return json.loads(body) if isinstance(body, str) else body


def _twilio(body: Any, now_ms: int) -> list[Routed]:
    form = dict(parse_qsl(body, keep_blank_values=True)) if isinstance(body, str) else body
    if not isinstance(form, dict) or not all(isinstance(v, str) for v in form.values()):
        raise BadLine("a twilio body is the form: an object of strings or url-encoded text")
    command = parse_twilio_form(form, now_ms)
    return [(CHAT_QUEUE, actor_for(command), command)]


def _meta(body: Any, now_ms: int) -> list[Routed]:
    parsed = parse_meta_delivery(_json_body(body), now_ms)
    if not parsed.commands:
        reasons = ", ".join(sorted({s.reason for s in parsed.skipped})) or "empty"
        raise BadLine(f"the meta delivery has no message or status to apply ({reasons})")
    return [(CHAT_QUEUE, actor_for(c), c) for c in parsed.commands]


def _stripe(body: Any, now_ms: int) -> list[Routed]:
    payload = _json_body(body)
    if not isinstance(payload, dict):
        raise BadLine("a stripe body is the event object")
    command = stripe_command(payload)
    actor = stripe_actor(command.event_type)
    if actor is None:
        raise BadLine(f"stripe event type {command.event_type!r} moves no credits or plans")
    return [(BILLING_QUEUE, actor, command)]


def _lemonsqueezy(body: Any, now_ms: int) -> list[Routed]:
    payload = _json_body(body)
    if not isinstance(payload, dict):
        raise BadLine("a lemonsqueezy body is the event object")
    command = lemonsqueezy_command(payload)
    if command is None:
        raise BadLine("not a lemonsqueezy order event (order_created, order_refunded)")
    return [(BILLING_QUEUE, LEMONSQUEEZY_ORDER_ACTOR, command)]


WEBHOOKS: dict[str, Callable[[Any, int], list[Routed]]] = {
    "twilio": _twilio,
    "meta": _meta,
    "stripe": _stripe,
    "lemonsqueezy": _lemonsqueezy,
}


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "command"
    return f"{where}: {error['msg']}" + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else "")


def _webhook_jobs(line: dict[str, Any]) -> list[Job]:
    provider = line["webhook"]
    convert = WEBHOOKS.get(provider) if isinstance(provider, str) else None
    if convert is None:
        raise BadLine(f"unknown webhook provider {provider!r} (expected one of {', '.join(WEBHOOKS)})")
    if "body" not in line:
        raise BadLine("a webhook line needs a body")
    received = line.get("received_at_ms", int(time.time() * 1000))
    if not isinstance(received, int) or isinstance(received, bool) or received < 0:
        raise BadLine("received_at_ms must be a non-negative integer")
    try:
        routed = convert(line["body"], received)
    except ValidationError as exc:
        raise BadLine(f"{provider} webhook: {_first_error(exc)}") from None
    except BadLine:
        raise
    except (ValueError, KeyError, TypeError) as exc:  # includes BadPayload and json errors
        raise BadLine(f"{provider} webhook: {exc!r}") from None
    return [Job(queue, actor, command.model_dump(mode="json")) for queue, actor, command in routed]


def _command_job(line: dict[str, Any]) -> Job:
    queue, actor, command = line.get("queue"), line.get("actor"), line.get("command")
    if not isinstance(queue, str) or not isinstance(actor, str):
        raise BadLine("a command line needs string fields queue and actor")
    if not isinstance(command, dict):
        raise BadLine("a command line needs a command object")
    queue = capability_of(queue)  # logged from a chat partition (chat.p2): replayed to plain chat
    try:
        validated = validate_command(queue, actor, command)
    except UnknownActor as exc:
        raise BadLine(str(exc)) from None
    except ValidationError as exc:
        raise BadLine(f"{actor}: {_first_error(exc)}") from None
    return Job(queue, actor, validated.model_dump(mode="json"))


def parse_line(text: str) -> list[Job]:
    """The commands of one line; BadLine if it has none."""
    try:
        line = json.loads(text)
    except ValueError as exc:
        raise BadLine(f"invalid JSON: {exc}") from None
    if not isinstance(line, dict):
        raise BadLine("a line must be a JSON object")
    if "webhook" in line:
        return _webhook_jobs(line)
    if "command" in line:
        return [_command_job(line)]
    raise BadLine('a line is a command {"queue", "actor", "command"} or a webhook {"webhook", "body"}')


def read_lines(lines: Iterator[str]) -> tuple[list[Job], list[tuple[int, str]]]:
    """(jobs, bad lines as (line number, reason)); blank lines are skipped."""
    jobs: list[Job] = []
    bad: list[tuple[int, str]] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            jobs.extend(parse_line(text))
        except BadLine as exc:
            bad.append((number, str(exc)))
    return jobs, bad
