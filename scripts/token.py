"""``python -m scripts.token USER_ID [--name NAME] [--admin | --operator TENANT]`` prints a signed dev JWT."""

from __future__ import annotations

import argparse
import time

import jwt

from infra.settings import Settings


def mint(secret: str, user_id: str, name: str | None, admin: bool, ttl_s: int, operator_of: str | None = None) -> str:
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "name": name or user_id, "iat": now, "exp": now + ttl_s}
    if admin:
        claims["role"] = "admin"
    elif operator_of:
        claims["role"] = "operator"
        claims["tenant"] = operator_of
    return jwt.encode(claims, secret, algorithm="HS256")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.token", description=__doc__)
    parser.add_argument("user_id")
    parser.add_argument("--name")
    role = parser.add_mutually_exclusive_group()
    role.add_argument("--admin", action="store_true", help="add role=admin")
    role.add_argument("--operator", metavar="TENANT", help="an operator of TENANT (role=operator, tenant=TENANT)")
    parser.add_argument("--ttl", type=int, default=86_400, help="seconds until expiry (default: one day)")
    args = parser.parse_args()
    if not 1 <= len(args.user_id) <= 128:
        parser.error("USER_ID must be 1-128 characters")
    secret = Settings().jwt_secret.get_secret_value()
    print(mint(secret, args.user_id, args.name, args.admin, args.ttl, args.operator))


if __name__ == "__main__":
    main()
