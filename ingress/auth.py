"""Who is calling: HS256 JWTs for users, a shared token for admins."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import jwt
from aiohttp import web


class Unauthorized(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    name: str
    role: str | None = None
    tenant: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def operator_of(self) -> str | None:
        """The tenant whose conversations this caller may work on, if an operator."""
        return self.tenant if self.role == "operator" else None


def mint_token(
    secret: str,
    user_id: str,
    name: str | None = None,
    *,
    role: str | None = None,
    tenant: str | None = None,
    ttl_s: int = 86_400,
) -> tuple[str, int]:
    """A signed HS256 token with the claims ``decode_token`` reads, and its expiry (epoch seconds)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "name": name or user_id, "iat": now, "exp": now + ttl_s}
    if role:
        claims["role"] = role
    if tenant:
        claims["tenant"] = tenant
    return jwt.encode(claims, secret, algorithm="HS256"), now + ttl_s


DEFAULT_LEEWAY_S = 30  # JWT_LEEWAY_S's default, for callers without settings at hand


def decode_token(token: object, secret: str, *, leeway_s: float = DEFAULT_LEEWAY_S) -> Identity:
    """Verify signature and expiry; identity comes only from the token's claims.

    ``exp`` is required: a token without one would be valid forever. ``leeway_s`` is the clock
    skew allowed on ``exp``, ``iat`` and ``nbf`` (``JWT_LEEWAY_S``).
    """
    if not isinstance(token, str) or not token:
        raise Unauthorized("missing token")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            leeway=leeway_s,
            options={"require": ["sub", "exp"], "verify_exp": True},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized(str(exc)) from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 1 <= len(sub) <= 128 or "\x00" in sub:
        raise Unauthorized("sub must be a string of 1-128 characters")
    name = claims.get("name")
    name = name.replace("\x00", "")[:128] if isinstance(name, str) else None
    role = claims.get("role")
    tenant = claims.get("tenant")
    return Identity(
        user_id=sub,
        name=name if name else sub,
        role=role if isinstance(role, str) else None,
        tenant=tenant if isinstance(tenant, str) and tenant else None,
    )


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token else None


def is_admin_request(
    request: web.Request, admin_token: str, jwt_secret: str, *, leeway_s: float = DEFAULT_LEEWAY_S
) -> bool:
    """An admin presents ``x-admin-token`` or a Bearer JWT with ``role: admin``."""
    presented = request.headers.get("x-admin-token")
    if presented is not None:
        return hmac.compare_digest(presented.encode("utf-8", "replace"), admin_token.encode())
    token = bearer_token(request)
    if token is None:
        return False
    try:
        return decode_token(token, jwt_secret, leeway_s=leeway_s).is_admin
    except Unauthorized:
        return False
