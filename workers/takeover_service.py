"""An operator taking a conversation over from the AI agent, or handing it back.

One operator holds a conversation at a time. Taking over what you already hold, or handing back
what nobody holds, changes nothing and still announces the current state (so a retrying client
converges); taking over what another operator holds is refused, naming the holder. Only the holder
(or an admin) hands it back. While held, ``channel_service.inbound_message`` queues no AI
auto-reply, and the AI worker drops one it finds queued from before.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.channels import conversation_room
from infra import conversations, inbox
from schemas.channels import user_channel
from schemas.commands import ConversationTakeover
from schemas.failure_notices import TAKEOVER_EVENT
from workers.channel_service import conversation_updated
from workers.effects import Outcome
from workers.emits import Emit, emit
from workers.unit_of_work import CommandTx, command_tx


def _refusal(cmd: ConversationTakeover, room_id: str, code: str, message: str, **extra: object) -> Emit:
    error = {"code": code, "message": message, "event": TAKEOVER_EVENT, "roomId": room_id, **extra}
    return emit("error", user_channel(cmd.operator_id), error)


def _state(row: dict[str, Any], room_id: str) -> Emit:
    return conversation_updated(row, room_id, None, int(row["last_message_at"].timestamp() * 1000))


async def _transition(tx: CommandTx, cmd: ConversationTakeover, row: dict[str, Any], room_id: str) -> Outcome:
    """Apply the takeover or hand-back to the locked conversation ``row``; every applied outcome
    announces the conversation's state, which the stored result names the holder of."""
    holder, name = row["taken_over_by"], row["taken_over_name"]
    if not cmd.release:
        if holder == cmd.operator_id:
            return _announce(tx, row, room_id)
        if holder is not None:
            who = f"{name or holder} has taken over this conversation"
            refusal = _refusal(cmd, room_id, "conflict", who, takenOverBy=holder, takenOverByName=name)
            return tx.reject([refusal], takenOverBy=None)
        row = await conversations.take_over(tx.conn, row["conversation_id"], cmd.operator_id, cmd.operator_name)
        return _announce(tx, row, room_id)
    if holder is None:
        return _announce(tx, row, room_id)
    if holder != cmd.operator_id and not cmd.admin:
        who = f"only {name or holder}, who has taken it over, or an admin can hand it back"
        refusal = _refusal(cmd, room_id, "forbidden", who, takenOverBy=holder, takenOverByName=name)
        return tx.reject([refusal], takenOverBy=None)
    row = await conversations.hand_back(tx.conn, row["conversation_id"])
    return _announce(tx, row, room_id)


def _announce(tx: CommandTx, row: dict[str, Any], room_id: str) -> Outcome:
    return tx.apply([_state(row, room_id)], takenOverBy=row["taken_over_by"])


async def take_over(pool: asyncpg.Pool, cmd: ConversationTakeover) -> Outcome:
    room_id = conversation_room(cmd.tenant_id, cmd.conversation_id)
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, cmd.operator_id)) as tx:
        if tx.replayed:
            return tx.replayed
        row = await conversations.lock_state(tx.conn, cmd.conversation_id, cmd.tenant_id)
        if row is None:
            return tx.reject([_refusal(cmd, room_id, "bad_request", "unknown conversation")], takenOverBy=None)
        return await _transition(tx, cmd, row, room_id)
