"""Typed HTTP errors: handlers and guards raise them, :func:`http_error_middleware` answers them.

Every refusal of the HTTP API has one body, ``{"error": {"code": ..., "message": ..., <extra>}}``:
the pages and the npm client read it, and the metrics middleware labels rejections with its
``code``. Each class carries its status and a default code; a raise may name another code
(``BadRequest(msg, code="bad_signature")``).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from aiohttp import web
from pydantic import ValidationError

from infra.json_limits import JsonLimitError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpError(Exception):
    """An error answer: ``status``, ``code`` and ``message``, with extra body fields and headers."""

    status: ClassVar[int] = 500
    code: str = "internal_error"

    def __init_subclass__(cls, *, status: int, code: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status = status
        cls.code = code

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class BadRequest(HttpError, status=400, code="bad_request"):
    """A path, query or body the API cannot use."""


class Unauthorized(HttpError, status=401, code="unauthorized"):
    """No credentials, or ones that do not verify."""


class Forbidden(HttpError, status=403, code="forbidden"):
    """Credentials that verify, without the right to this."""


class NotFound(HttpError, status=404, code="not_found"):
    """Nothing there, or a route turned off."""


class Conflict(HttpError, status=409, code="conflict"):
    """The state on the server forbids it (a name taken, a key used)."""


class PayloadTooLarge(HttpError, status=413, code="payload_too_large"):
    """A body over a size limit."""


class UnsupportedMediaType(HttpError, status=415, code="unsupported_media_type"):
    """A body of a type the route does not read."""


class TooManyRequests(HttpError, status=429, code="rate_limited"):
    """Too many: ``Retry-After`` says when to try again (whole seconds), ``retryAfterMs`` the same."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        seconds = max(1, math.ceil(retry_after_s))
        super().__init__(message, extra={"retryAfterMs": seconds * 1000}, headers={"Retry-After": str(seconds)})


class BadGateway(HttpError, status=502, code="bad_gateway"):
    """A provider we called failed."""


class Unavailable(HttpError, status=503, code="unavailable"):
    """Not now: a dependency is down or not configured; retrying later may work."""


def json_refused(exc: JsonLimitError) -> HttpError:
    """A body refused by infra.json_limits: 400 ``json_too_deep`` (413 ``json_too_large``)."""
    kind = PayloadTooLarge if exc.status == PayloadTooLarge.status else BadRequest
    return kind(str(exc), code=exc.code)


def first_problem(exc: ValidationError, whole: str = "body") -> str:
    """The first problem pydantic found, as ``<field.path>: <what is wrong>`` (``whole``: no field)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or whole
    return f"{where}: {first['msg']}"


def error_response(error: HttpError) -> web.Response:
    """The one place the error body is rendered."""
    return web.json_response(error.body(), status=error.status, headers=error.headers or None)


@web.middleware
async def http_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HttpError as error:
        return error_response(error)
