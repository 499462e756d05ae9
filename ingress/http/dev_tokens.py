"""``/api/dev/token``: mint a JWT for any user, for the web pages in development (``ALLOW_DEV_TOKENS``).

Anyone who can reach the endpoint can become any user, operator or admin, so it answers 404
unless the setting is on, and the setting must never be on in production.
"""

from __future__ import annotations

from typing import Literal

import structlog
from aiohttp import web
from pydantic import Field, field_validator, model_validator

from ingress.auth import mint_token
from ingress.http.api_docs import documented
from ingress.http.errors import BadRequest, NotFound
from ingress.http.http_api import parse_body
from ingress.state import APP_STATE
from schemas.base import Inbound

log = structlog.get_logger(__name__)

dev_token_routes = web.RouteTableDef()
DEV_TOKEN_TTL_S = 86_400


class DevTokenRequest(Inbound):
    userId: str = Field(min_length=1, max_length=128)
    name: str | None = Field(default=None, min_length=1, max_length=128)
    role: Literal["user", "operator", "admin"] = "user"
    tenant: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("userId", "name", "tenant")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and ("\x00" in value or not value.strip()):
            raise ValueError("must be non-blank and contain no NUL characters")
        return value

    @model_validator(mode="after")
    def _operator_has_tenant(self) -> DevTokenRequest:
        if self.role == "operator" and not self.tenant:
            raise ValueError("an operator token needs a tenant")
        return self


def _enabled(request: web.Request) -> bool:
    return request.app[APP_STATE].settings.allow_dev_tokens


@dev_token_routes.get("/api/dev/token")
@documented({200: "enabled: whether POST mints tokens here"})
async def dev_token_status(request: web.Request) -> web.Response:
    """Tells the pages whether to offer "mint a dev token"."""
    return web.json_response({"enabled": _enabled(request)})


@dev_token_routes.post("/api/dev/token")
@documented({201: "The token and when it expires (epoch seconds)"}, BadRequest, NotFound, body=DevTokenRequest)
async def mint_dev_token(request: web.Request) -> web.Response:
    """Mint a JWT for any user, operator or admin: development only (ALLOW_DEV_TOKENS, else 404)."""
    if not _enabled(request):
        raise NotFound("dev tokens are disabled (ALLOW_DEV_TOKENS)")
    body: DevTokenRequest = await parse_body(request, DevTokenRequest)
    secret = request.app[APP_STATE].settings.jwt_secret.get_secret_value()
    role = None if body.role == "user" else body.role
    tenant = body.tenant if body.role == "operator" else None
    token, expires_at = mint_token(secret, body.userId, body.name, role=role, tenant=tenant, ttl_s=DEV_TOKEN_TTL_S)
    log.warning("dev_token.minted", user_id=body.userId, role=body.role, tenant=tenant)
    return web.json_response({"token": token, "expiresAt": expires_at}, status=201)
