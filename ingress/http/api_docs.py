"""Each route's OpenAPI operation, declared on its handler: ``@documented(...)`` under the route.

The operation rides on the handler, so ingress.http.openapi finds it by walking the app's router:
a route is documented where it is registered, its summary and description are the handler's
docstring, and a route left undocumented is missing from ``GET /api/openapi.json``, which
tests/unit/test_openapi.py catches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from ingress.http.errors import HttpError

H = TypeVar("H", bound=Callable[..., Any])
_ATTRIBUTE = "openapi_operation"


@dataclass(frozen=True, slots=True)
class SecurityScheme:
    """An OpenAPI security scheme, under the name operations name it by."""

    name: str
    scheme: Mapping[str, Any]


BEARER = SecurityScheme(
    "bearerJwt",
    {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An HS256 JWT signed with JWT_SECRET (exp required): sub is the user; the claims"
        " role (admin, operator) and tenant say what else it may do",
    },
)
ADMIN_TOKEN = SecurityScheme(
    "adminToken",
    {
        "type": "apiKey",
        "in": "header",
        "name": "x-admin-token",
        "description": "ADMIN_TOKEN. After ADMIN_AUTH_MAX_FAILURES wrong ones from an address within"
        " ADMIN_AUTH_WINDOW_S, its requests that present one answer 429 until the window ends",
    },
)
JWT = (BEARER,)
ADMIN_OR_JWT = (ADMIN_TOKEN, BEARER)  # x-admin-token, or a JWT (its role or user decides)


def whole(low: int, high: int | None = None) -> dict[str, Any]:
    """The schema of a whole number from ``low`` (to ``high``)."""
    return {"type": "integer", "minimum": low} | ({} if high is None else {"maximum": high})


@dataclass(frozen=True, slots=True)
class Query:
    """A query parameter, optional unless ``required``."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True, slots=True)
class RawBody:
    """A request body no model of ours describes, such as a provider's webhook."""

    media_type: str
    description: str


Answer = type[BaseModel] | str  # a model of schemas/, or a description of what the answer holds


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    description: str | None
    answers: Mapping[int, Answer]  # the 2xx answers, in ``media_type``
    errors: tuple[type[HttpError], ...]  # the refusals, each with the error body
    security: tuple[SecurityScheme, ...]  # any one of them lets the caller in
    body: type[BaseModel] | RawBody | None
    query: tuple[Query, ...]
    media_type: str


def documented(
    answers: Mapping[int, Answer],
    *errors: type[HttpError],
    auth: tuple[SecurityScheme, ...] = (),
    body: type[BaseModel] | RawBody | None = None,
    query: tuple[Query, ...] = (),
    media_type: str = "application/json",
) -> Callable[[H], H]:
    """Attach the handler's operation; its docstring's first line is the summary, the rest the description."""

    def attach(handler: H) -> H:
        doc = (handler.__doc__ or "").strip()
        if not doc:
            raise TypeError(f"{handler.__qualname__}: a documented route needs a docstring (its summary)")
        summary, _, rest = doc.partition("\n")
        description = " ".join(line.strip() for line in rest.splitlines() if line.strip()) or None
        operation = Operation(summary.strip(), description, answers, errors, auth, body, query, media_type)
        setattr(handler, _ATTRIBUTE, operation)
        return handler

    return attach


def operation_of(handler: Callable[..., Any]) -> Operation | None:
    return getattr(handler, _ATTRIBUTE, None)
