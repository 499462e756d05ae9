"""Hygiene at the HTTP edge: refuse what the database cannot store, and keep JSON APIs out of
caches and content sniffing.

* Paths and query strings with NUL or unpaired surrogates (``%00``, ``%ED%A0%80``) answer 400
  before any handler runs; JSON bodies get the same check in their schemas (schemas.base.Storable).
* Every JSON response and everything under ``/api/`` carries ``X-Content-Type-Options: nosniff``
  and ``Cache-Control: no-store``: they carry balances and tokens. Static files and pages keep
  their own caching (ingress.http.web_routes: ETag revalidation).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ingress.http.errors import BadRequest
from schemas.storable import unstorable_text

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NO_STORE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def _unstorable_part(request: web.Request) -> str | None:
    if unstorable_text(request.path):
        return "path"
    for key, value in request.query.items():
        if unstorable_text(key) or unstorable_text(value):
            return "query"
    return None


@web.middleware
async def refuse_unstorable_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (part := _unstorable_part(request)) is not None:
        raise BadRequest(f"the {part} contains NUL or unpaired surrogate characters")
    return await handler(request)


async def json_api_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: also sees the responses of raised HTTP exceptions."""
    if request.path.startswith("/static/"):
        return
    if request.path.startswith("/api/") or response.content_type == "application/json":
        for name, value in NO_STORE_HEADERS.items():
            response.headers[name] = value
