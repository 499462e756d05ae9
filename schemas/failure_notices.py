"""What a command's sender is told when the workers give up on it (fail closed).

Each function builds the ``error`` event for one kind of command from the registry's message
(:mod:`schemas.actors`); nothing was applied, so the message says what did not happen.
"""

from __future__ import annotations

from domain.channels import conversation_room
from schemas.calls import CallMeter
from schemas.channels import user_channel
from schemas.commands import ConversationTakeover, OperatorReply, SendChatMessage
from schemas.emits import Emit, emit
from schemas.socket_events import CommandFailed
from schemas.tips import SendTipCommand, TipFailed

TAKEOVER_EVENT = "takeOverConversation"  # the socket event an operator's takeover came from


def chat_message(cmd: SendChatMessage, message: str) -> Emit:
    notice = CommandFailed(
        code="internal",
        message=message,
        messageId=cmd.message_id,
        clientMessageId=cmd.client_message_id,
        roomId=cmd.room_id,
    )
    return emit("error", user_channel(cmd.user_id), notice.model_dump(mode="json"))


def operator_reply(cmd: OperatorReply, message: str) -> Emit:
    notice = CommandFailed(
        code="internal", message=message, messageId=cmd.message_id, clientMessageId=cmd.client_message_id
    )
    return emit("error", user_channel(cmd.operator_id), notice.model_dump(mode="json"))


def takeover(cmd: ConversationTakeover, message: str) -> Emit:
    room_id = conversation_room(cmd.tenant_id, cmd.conversation_id)
    notice = CommandFailed(code="internal", message=message, roomId=room_id)
    return emit("error", user_channel(cmd.operator_id), {**notice.model_dump(mode="json"), "event": TAKEOVER_EVENT})


def tip(cmd: SendTipCommand, message: str) -> Emit:
    notice = TipFailed(code="internal", message=message, tipId=cmd.tip_id, clientTipId=cmd.client_tip_id)
    return emit("error", user_channel(cmd.user_id), notice.model_dump(mode="json"))


def call_meter(cmd: CallMeter, message: str) -> Emit:
    error = {"code": "internal", "message": message, "event": cmd.event, "callId": cmd.call_id}
    return emit("error", user_channel(cmd.sender_id), error)
