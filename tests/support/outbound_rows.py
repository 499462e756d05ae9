"""Queued outbound messages seeded straight in SQL, and the sending addresses they use."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from domain.channels import Channel, conversation_room
from schemas.channels import room_channel

TWILIO_NUMBER = "+14155238886"
WA_PHONE_NUMBER_ID = "106540352242922"
IG_ACCOUNT_ID = "17841400000000001"


@dataclass(frozen=True)
class Seeded:
    message_id: str
    tenant_id: str
    conversation_id: str
    body: str

    @property
    def room(self) -> str:
        return room_channel(conversation_room(self.tenant_id, self.conversation_id))


async def insert_outbound(
    pool: asyncpg.Pool,
    channel: Channel | str,
    address: str,
    contact: str,
    *,
    body: str | None = None,
    tenant_id: str | None = None,
    status: str = "queued",
    attempts: int = 0,
) -> Seeded:
    """A tenant, a conversation and one queued outbound message, straight in SQL.

    The body names the message id, so a fake provider's requests can be matched to their row.
    """
    tenant_id = tenant_id or f"t-{uuid.uuid4().hex[:10]}"
    message_id = str(uuid.uuid4())
    body = body or f"hello {message_id}"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO tenants (tenant_id, name) VALUES ($1, $1) ON CONFLICT (tenant_id) DO NOTHING", tenant_id
        )
        conversation_id = await conn.fetchval(
            "INSERT INTO conversations (conversation_id, tenant_id, channel, address, contact)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, channel, contact)"
            " DO UPDATE SET last_message_at = now() RETURNING conversation_id",
            uuid.uuid4(),
            tenant_id,
            str(channel),
            address,
            contact,
        )
        await conn.execute(
            "INSERT INTO outbound_messages (message_id, conversation_id, tenant_id, channel, address, contact, body,"
            " status, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            uuid.UUID(message_id),
            conversation_id,
            tenant_id,
            str(channel),
            address,
            contact,
            body,
            status,
            attempts,
        )
    return Seeded(message_id, tenant_id, str(conversation_id), body)
