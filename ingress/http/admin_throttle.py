"""Throttle admin-token guessing: after ``ADMIN_AUTH_MAX_FAILURES`` wrong ``x-admin-token``
headers from one client IP within ``ADMIN_AUTH_WINDOW_S``, every request from that IP that
presents an admin token answers 429 (with ``Retry-After``) until the window ends.

The count lives in Redis, so it holds across nodes. Only a presented, wrong admin token counts:
an ordinary user's request (a Bearer JWT, or nothing) is never throttled here. While an IP is
blocked even the right token is refused, so a guesser learns nothing from a hit. If Redis is
unreachable the check is skipped (logged): the token itself still guards the routes.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from ingress.http.errors import TooManyRequests
from ingress.proxies import client_ip
from ingress.state import APP_STATE

log = structlog.get_logger(__name__)

ADMIN_TOKEN_HEADER = "x-admin-token"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def admin_auth_throttle_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    presented = request.headers.get(ADMIN_TOKEN_HEADER)
    state = request.app.get(APP_STATE)
    if presented is None or state is None:
        return await handler(request)
    settings = state.settings
    ip = client_ip(request)
    key = settings.key("admin-auth-failures", ip)
    wrong = not hmac.compare_digest(
        presented.encode("utf-8", "replace"), settings.admin_token.get_secret_value().encode()
    )
    try:
        pipe = state.redis.pipeline(transaction=True)
        if wrong:  # counted before the verdict, so concurrent guesses cannot all slip under the bound
            pipe.set(key, 0, ex=settings.admin_auth_window_s, nx=True)
            pipe.incr(key)
        else:
            pipe.get(key)
        pipe.pttl(key)
        *_, failures, ttl_ms = await pipe.execute()
        budget = settings.admin_auth_max_failures
        if failures is not None and int(failures) > (budget if wrong else budget - 1):
            first = wrong and int(failures) == budget + 1  # log the start of a block, not every guess
            (log.warning if first else log.debug)("admin_auth.throttled", client_ip=ip, failures=int(failures))
            retry_s = (ttl_ms if ttl_ms and ttl_ms > 0 else settings.admin_auth_window_s * 1000) / 1000
            raise TooManyRequests("too many failed admin authentications from this address", retry_s)
        if wrong:
            log.warning("admin_auth.failed", client_ip=ip)
    except RedisError as exc:
        log.warning("admin_auth.throttle_unavailable", error=str(exc))
    return await handler(request)
