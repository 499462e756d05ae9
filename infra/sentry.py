"""Error reporting to Sentry, when ``SENTRY_DSN`` is set, with people's words and numbers scrubbed.

Ingress passes sentry-sdk's aiohttp integration, workers its dramatiq one. Every event goes
through :func:`scrub_event` before it leaves the process: chat and channel texts, model output,
phone numbers and contact addresses never reach Sentry, whether they sit under a known key
(a command's ``text``, a message's ``message``) or inside a string (the repr of a dramatiq
message in a log line, an exception message quoting a command).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import metadata
from typing import Any, TypeVar

import sentry_sdk

from infra.settings import Settings

REDACTED = "[redacted]"

# Keys whose values are what people wrote or who they are: message texts, model output,
# contacts. Matched case-insensitively, at any depth.
SENSITIVE_KEYS = frozenset(
    {
        "message",
        "text",
        "content",
        "body",
        "delta",
        "summary",
        "caption",
        "contact",
        "contact_name",
        "address",
        "from",
        "to",
        "phone",
        "wa_id",
        "profile",
    }
)

# A phone number: an optional +, then 8 to 15 digits with the usual separators.
PHONE = re.compile(r"(?<![\w(])\+?\(?\d(?:[\s().-]{0,2}\d){7,14}(?![\w])")
# ``'text': '…'`` or ``"message": "…"`` inside a repr or JSON string.
_KEYS = "|".join(sorted(SENSITIVE_KEYS))
QUOTED_PAIR = re.compile(
    r"""(?P<key>['"](?:""" + _KEYS + r""")['"]\s*:\s*)(?P<q>['"])(?:\\.|(?!(?P=q)).)*(?P=q)""",
    re.IGNORECASE,
)


def scrub_text(value: str) -> str:
    value = QUOTED_PAIR.sub(lambda m: f"{m.group('key')}{m.group('q')}{REDACTED}{m.group('q')}", value)
    return PHONE.sub("[phone]", value)


_Payload = TypeVar("_Payload", bound=Mapping[str, Any])  # an event or a breadcrumb (TypedDicts of sentry_sdk)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and key.lower() in SENSITIVE_KEYS and value[key] else _scrub(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def scrub_event(event: _Payload, hint: dict[str, Any] | None = None) -> _Payload:
    """``before_send`` (and ``before_breadcrumb``): the event with texts and numbers redacted.

    Structural fields Sentry needs (the exception type, stack frames' file and function names,
    tags) carry no user data and survive; every string is still passed through the patterns.
    """
    return _scrub(event)


def release() -> str:
    try:
        return f"gatekeeper@{metadata.version('gatekeeper')}"
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "gatekeeper@unknown"


def init_sentry(settings: Settings, service: str, integrations: list[Any]) -> bool:
    """Start reporting if ``SENTRY_DSN`` is set; True if it was."""
    dsn = settings.sentry_dsn.get_secret_value()
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        release=settings.sentry_release or release(),
        environment=settings.sentry_environment,
        integrations=integrations,
        send_default_pii=False,
        include_local_variables=False,  # locals hold commands and texts
        before_send=scrub_event,
        before_breadcrumb=lambda crumb, hint: scrub_event(crumb),
        traces_sample_rate=settings.sentry_traces_sample_rate,
    )
    sentry_sdk.set_tag("service", service)
    sentry_sdk.set_tag("node", settings.node_id)
    return True
