"""An operator taking a conversation over from the AI agent, or handing it back.

One operator holds a conversation at a time. Taking over what you already hold, or handing back
what nobody holds, changes nothing and still announces the current state (so a retrying client
converges); taking over what another operator holds is refused, naming the holder. Only the holder
(or an admin) hands it back. While held, ``channel_service.inbound_message`` queues no AI
auto-reply, and the AI worker drops one it finds queued from before.
"""

from __future__ import annotations

import uuid

import asyncpg

from domain.channels import conversation_room
from infra import inbox
from schemas.channels import user_channel
from schemas.commands import ConversationTakeover
from workers.channel_service import conversation_updated
from workers.effects import Outcome, replay
from workers.emits import Emit, emit

EVENT = "takeOverConversation"

_COLUMNS = (
    "conversation_id, tenant_id, channel, contact, contact_name, last_message_at, intent, confidence, lead,"
    " summary, taken_over_by, taken_over_name, taken_over_at"
)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _refusal(cmd: ConversationTakeover, room_id: str, code: str, message: str, **extra: object) -> Emit:
    error = {"code": code, "message": message, "event": EVENT, "roomId": room_id, **extra}
    return emit("error", user_channel(cmd.operator_id), error)


def _state(row: asyncpg.Record, room_id: str) -> Emit:
    return conversation_updated(row, room_id, None, int(row["last_message_at"].timestamp() * 1000))


async def _transition(
    conn: asyncpg.Connection, cmd: ConversationTakeover, row: asyncpg.Record, room_id: str
) -> Outcome:
    holder, name = row["taken_over_by"], row["taken_over_name"]
    if not cmd.release:
        if holder == cmd.operator_id:
            return Outcome(True, "applied", [_state(row, room_id)])
        if holder is not None:
            who = f"{name or holder} has taken over this conversation"
            refusal = _refusal(cmd, room_id, "conflict", who, takenOverBy=holder, takenOverByName=name)
            return Outcome(True, "rejected", [refusal])
        row = await conn.fetchrow(
            "UPDATE conversations SET taken_over_by = $2, taken_over_name = $3, taken_over_at = now()"
            f" WHERE conversation_id = $1 RETURNING {_COLUMNS}",
            row["conversation_id"], cmd.operator_id, cmd.operator_name,
        )  # fmt: skip
        return Outcome(True, "applied", [_state(row, room_id)])
    if holder is None:
        return Outcome(True, "applied", [_state(row, room_id)])
    if holder != cmd.operator_id and not cmd.admin:
        who = f"only {name or holder}, who has taken it over, or an admin can hand it back"
        refusal = _refusal(cmd, room_id, "forbidden", who, takenOverBy=holder, takenOverByName=name)
        return Outcome(True, "rejected", [refusal])
    row = await conn.fetchrow(
        "UPDATE conversations SET taken_over_by = NULL, taken_over_name = NULL, taken_over_at = NULL"
        f" WHERE conversation_id = $1 RETURNING {_COLUMNS}",
        row["conversation_id"],
    )
    return Outcome(True, "applied", [_state(row, room_id)])


async def take_over(pool: asyncpg.Pool, cmd: ConversationTakeover) -> Outcome:
    room_id = conversation_room(cmd.tenant_id, cmd.conversation_id)
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, cmd.command_id, cmd.type, cmd.operator_id)) is not None:
            return replay(stored)
        row = None
        if (conversation_id := _uuid(cmd.conversation_id)) is not None:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM conversations WHERE conversation_id = $1 AND tenant_id = $2 FOR UPDATE",
                conversation_id, cmd.tenant_id,
            )  # fmt: skip
        if row is None:
            outcome = Outcome(True, "rejected", [_refusal(cmd, room_id, "bad_request", "unknown conversation")])
        else:
            outcome = await _transition(conn, cmd, row, room_id)
        held = outcome.emits[0]["data"].get("takenOverBy") if outcome.status == "applied" else None
        await inbox.finish(conn, cmd.command_id, outcome.status, outcome.stored_result(takenOverBy=held))
        return outcome
