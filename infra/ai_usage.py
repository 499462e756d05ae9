"""What the AI agent reads and records: its model calls (``ai_usage``, for quotas and billing),
the room context and tenant prompt it is shown, and whether a command was already answered."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from infra import inbox

Conn = asyncpg.Connection | asyncpg.Pool


async def record(
    conn: Conn,
    command_id: str,
    purpose: str,
    asker: str,
    tenant_id: str | None,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    latency_ms: int,
    error_code: str | None = None,
) -> None:
    """One model call: ``ok`` without an ``error_code``, ``error`` with one."""
    await conn.execute(
        "INSERT INTO ai_usage (call_id, command_id, purpose, asker, tenant_id, model, prompt_tokens,"
        " completion_tokens, latency_ms, status, error_code) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        uuid.uuid4(),
        command_id,
        purpose,
        asker,
        tenant_id,
        model,
        prompt_tokens,
        completion_tokens,
        latency_ms,
        "ok" if error_code is None else "error",
        error_code,
    )


async def answered(conn: Conn, command_id: str) -> inbox.Stored | None:
    """The stored outcome of a command already applied or rejected (None: not yet, or failed)."""
    row = await conn.fetchrow(
        "SELECT status, result FROM inbox WHERE command_id = $1 AND status <> 'failed'", command_id
    )
    return inbox.Stored(row["status"], row["result"]) if row else None


async def context(conn: Conn, room_id: str, trigger_message_id: str, limit: int) -> list[dict[str, Any]]:
    """The room's last ``limit`` messages up to and including the trigger, oldest first."""
    rows = await conn.fetch(
        "SELECT payload FROM (SELECT seq, payload FROM messages WHERE room_id = $1 AND seq <="
        " (SELECT seq FROM messages WHERE message_id = $2) ORDER BY seq DESC LIMIT $3) recent ORDER BY seq",
        room_id,
        uuid.UUID(trigger_message_id),
        limit,
    )
    return [r["payload"] for r in rows]


async def system_prompt(conn: Conn, tenant_id: str | None) -> str:
    """The tenant's own prompt for the agent ("" for none, or for a chat room)."""
    if tenant_id is None:
        return ""
    return await conn.fetchval("SELECT system_prompt FROM tenants WHERE tenant_id = $1", tenant_id) or ""
