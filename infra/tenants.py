"""Tenants (businesses) and the channels that route inbound traffic to them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from infra import ledger
from infra.db import Conn, ConnOrPool


class TenantExists(Exception):
    pass


class ChannelTaken(Exception):
    """That number or account id already routes to another tenant."""


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    name: str
    system_prompt: str
    auto_reply: bool
    channels: list[dict[str, str]] = field(default_factory=list)
    credits: int = 0
    words_left: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "name": self.name,
            "systemPrompt": self.system_prompt,
            "autoReply": self.auto_reply,
            "channels": self.channels,
            "credits": self.credits,
            "wordsLeft": self.words_left,
        }


async def _add_channels(conn: Conn, tenant_id: str, channels: list[tuple[str, str]]) -> None:
    for channel, address in channels:
        owner = await conn.fetchval(
            "INSERT INTO tenant_channels (channel, address, tenant_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (channel, address) DO UPDATE SET channel = EXCLUDED.channel RETURNING tenant_id",
            channel,
            address,
            tenant_id,
        )
        if owner != tenant_id:
            raise ChannelTaken(f"{channel} {address} already belongs to tenant {owner!r}")


async def create(
    pool: asyncpg.Pool,
    tenant_id: str,
    name: str,
    system_prompt: str = "",
    auto_reply: bool = False,
    channels: list[tuple[str, str]] | None = None,
) -> Tenant:
    async with pool.acquire() as conn, conn.transaction():
        try:
            await conn.execute(
                "INSERT INTO tenants (tenant_id, name, system_prompt, auto_reply) VALUES ($1, $2, $3, $4)",
                tenant_id,
                name,
                system_prompt,
                auto_reply,
            )
        except asyncpg.UniqueViolationError:
            raise TenantExists(tenant_id) from None
        await ledger.ensure_account(conn, ledger.tenant_account(tenant_id))
        await _add_channels(conn, tenant_id, channels or [])
    return await get(pool, tenant_id)  # type: ignore[return-value]


async def update(
    pool: asyncpg.Pool,
    tenant_id: str,
    *,
    name: str | None = None,
    system_prompt: str | None = None,
    auto_reply: bool | None = None,
    add_channels: list[tuple[str, str]] | None = None,
    remove_channels: list[tuple[str, str]] | None = None,
) -> Tenant | None:
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            "UPDATE tenants SET name = coalesce($2, name), system_prompt = coalesce($3, system_prompt),"
            " auto_reply = coalesce($4, auto_reply), updated_at = now() WHERE tenant_id = $1 RETURNING true",
            tenant_id,
            name,
            system_prompt,
            auto_reply,
        )
        if not found:
            return None
        for channel, address in remove_channels or []:
            await conn.execute(
                "DELETE FROM tenant_channels WHERE channel = $1 AND address = $2 AND tenant_id = $3",
                channel,
                address,
                tenant_id,
            )
        await _add_channels(conn, tenant_id, add_channels or [])
    return await get(pool, tenant_id)


_SELECT = (
    "SELECT t.tenant_id, t.name, t.system_prompt, t.auto_reply,"
    " coalesce(a.credits, 0) AS credits, coalesce(a.words_left, 0) AS words_left,"
    " coalesce((SELECT json_agg(json_build_object('channel', c.channel, 'address', c.address)"
    "   ORDER BY c.channel, c.address) FROM tenant_channels c WHERE c.tenant_id = t.tenant_id), '[]')::text"
    "   AS channels"
    " FROM tenants t LEFT JOIN accounts a ON a.account_id = 'tenant:' || t.tenant_id"
)


def _tenant(row: asyncpg.Record) -> Tenant:
    import json

    return Tenant(
        row["tenant_id"],
        row["name"],
        row["system_prompt"],
        row["auto_reply"],
        json.loads(row["channels"]),
        row["credits"],
        row["words_left"],
    )


async def get(pool: asyncpg.Pool, tenant_id: str) -> Tenant | None:
    row = await pool.fetchrow(f"{_SELECT} WHERE t.tenant_id = $1", tenant_id)
    return _tenant(row) if row else None


async def list_all(pool: asyncpg.Pool, limit: int = 500, offset: int = 0) -> list[Tenant]:
    rows = await pool.fetch(f"{_SELECT} ORDER BY t.tenant_id LIMIT $1 OFFSET $2", limit, offset)
    return [_tenant(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Route:
    tenant_id: str
    auto_reply: bool


async def route(conn: Conn, channel: str, address: str) -> Route | None:
    """The tenant that owns a destination number or account id, if any."""
    row = await conn.fetchrow(
        "SELECT t.tenant_id, t.auto_reply FROM tenant_channels c JOIN tenants t USING (tenant_id)"
        " WHERE c.channel = $1 AND c.address = $2",
        channel,
        address,
    )
    return Route(row["tenant_id"], row["auto_reply"]) if row else None


async def system_prompt(conn: ConnOrPool, tenant_id: str | None) -> str:
    """The tenant's own prompt for the agent ("" for none, or for a chat room)."""
    if tenant_id is None:
        return ""
    return await conn.fetchval("SELECT system_prompt FROM tenants WHERE tenant_id = $1", tenant_id) or ""
