"""``python -m scripts.token USER_ID [--name NAME] [--admin | --operator TENANT]`` prints a signed dev JWT."""

from __future__ import annotations

import argparse

from infra.settings import Settings
from ingress.auth import mint_token


def mint(secret: str, user_id: str, name: str | None, admin: bool, ttl_s: int, operator_of: str | None = None) -> str:
    role = "admin" if admin else "operator" if operator_of else None
    return mint_token(secret, user_id, name, role=role, tenant=None if admin else operator_of, ttl_s=ttl_s)[0]


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
