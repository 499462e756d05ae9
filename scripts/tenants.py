"""``python -m scripts.tenants add|list|show|set``: manage tenants and their channels.

Examples::

    python -m scripts.tenants add acme --name "Acme" --channel twilio_whatsapp:+14155238886 --auto-reply
    python -m scripts.tenants set acme --prompt "You are Acme's assistant." --add-channel instagram:17841400000
    python -m scripts.tenants show acme
    python -m scripts.tenants list
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from pydantic import ValidationError

from infra import db, tenants
from infra.settings import Settings
from schemas.tenants import ChannelRef, CreateTenant


def _channel(value: str) -> tuple[str, str]:
    channel, sep, address = value.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError("expected CHANNEL:ADDRESS, e.g. twilio_whatsapp:+14155238886")
    try:
        ref = ChannelRef.model_validate({"channel": channel, "address": address})
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(exc.errors()[0]["msg"]) from None
    return ref.channel.value, ref.address


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.tenants", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="create a tenant")
    add.add_argument("tenant_id")
    add.add_argument("--name", required=True)
    add.add_argument("--prompt", default="", help="the AI agent's system prompt")
    add.add_argument("--auto-reply", action="store_true")
    add.add_argument("--channel", type=_channel, action="append", default=[], metavar="CHANNEL:ADDRESS")
    sub.add_parser("list", help="list tenants")
    show = sub.add_parser("show", help="show one tenant")
    show.add_argument("tenant_id")
    set_ = sub.add_parser("set", help="change a tenant")
    set_.add_argument("tenant_id")
    set_.add_argument("--name")
    set_.add_argument("--prompt")
    set_.add_argument("--auto-reply", choices=["on", "off"])
    set_.add_argument("--add-channel", type=_channel, action="append", default=[], metavar="CHANNEL:ADDRESS")
    set_.add_argument("--remove-channel", type=_channel, action="append", default=[], metavar="CHANNEL:ADDRESS")
    return parser


async def run(args: argparse.Namespace, settings: Settings) -> int:
    await db.migrate(settings.database_url)
    pool = await db.create_pool(settings.database_url, max_size=2)
    tenant: tenants.Tenant | None
    try:
        if args.command == "add":
            CreateTenant(tenantId=args.tenant_id, name=args.name)  # validates the id and name
            tenant = await tenants.create(pool, args.tenant_id, args.name, args.prompt, args.auto_reply, args.channel)
        elif args.command == "list":
            for t in await tenants.list_all(pool):
                channels = ", ".join(f"{c['channel']}:{c['address']}" for c in t.channels) or "-"
                print(f"{t.tenant_id}\t{t.name}\tcredits={t.credits}\tauto_reply={t.auto_reply}\t{channels}")
            return 0
        elif args.command == "show":
            tenant = await tenants.get(pool, args.tenant_id)
        else:
            auto = None if args.auto_reply is None else args.auto_reply == "on"
            tenant = await tenants.update(
                pool,
                args.tenant_id,
                name=args.name,
                system_prompt=args.prompt,
                auto_reply=auto,
                add_channels=args.add_channel,
                remove_channels=args.remove_channel,
            )
        if tenant is None:
            print(f"no tenant {args.tenant_id!r}", file=sys.stderr)
            return 1
        print(json.dumps(tenant.as_json(), indent=2, ensure_ascii=False))
        return 0
    except (tenants.TenantExists, tenants.ChannelTaken, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await pool.close()


def main() -> int:
    args = _parser().parse_args()
    return asyncio.run(run(args, Settings()))


if __name__ == "__main__":
    sys.exit(main())
