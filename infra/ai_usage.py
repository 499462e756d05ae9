"""The AI agent's model calls (``ai_usage``): tokens and latency, for quotas and billing."""

from __future__ import annotations

import uuid

from infra.db import ConnOrPool


async def record(
    conn: ConnOrPool,
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
