"""The tip contract: the client's ``sendTip``, the billing command, and the events it produces."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from schemas.base import Command, Inbound, Outbound
from schemas.socket_events import NewMessage
from schemas.storable import EpochMs

MAX_TIP_CREDITS = 1_000_000_000  # the wire's hard ceiling; TIP_MAX_CREDITS sets the real one
TipCreditCode = Literal["insufficient_credits", "spending_blocked"]
_TIP_NS = uuid.UUID("0c5e1f6a-2b7d-4f8e-9a31-5d6c7e8f9012")


class SendTip(Inbound):
    """``sendTip``: money moves, so unknown fields are refused rather than ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    toUserId: str = Field(min_length=1, max_length=128)
    credits: int = Field(gt=0, le=MAX_TIP_CREDITS)
    roomId: str | None = None
    clientTipId: str = Field(min_length=1, max_length=128)

    @field_validator("toUserId", "clientTipId")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("clientTipId")
    @classmethod
    def _no_colon(cls, value: str) -> str:
        # The ledger reference is tip:<sender>:<clientTipId>; a colon-free id keeps it unambiguous.
        if ":" in value:
            raise ValueError("must not contain ':'")
        return value


def tip_ids(from_user_id: str, client_tip_id: str) -> tuple[str, str]:
    """(command_id, tip_id): the same for every send of one (sender, clientTipId)."""
    command_id = f"tip:{from_user_id}:{client_tip_id}"
    return command_id, str(uuid.uuid5(_TIP_NS, command_id))


class SendTipCommand(Command):
    """Move ``credits`` from one user to another; ``command_id`` is also the ledger reference."""

    type: Literal["billing.send_tip"] = "billing.send_tip"
    command_id: str = Field(min_length=1, max_length=300)
    tip_id: str  # also the room message's id when the tip is shown in a room
    user_id: str  # the sender (named user_id so the fail-closed log attributes it)
    username: str
    to_user_id: str
    credits: int = Field(gt=0, le=MAX_TIP_CREDITS)
    room_id: str | None = None
    client_tip_id: str
    accepted_at_ms: EpochMs


class TipReceived(Outbound):
    tipId: str
    fromUserId: str
    fromUsername: str
    credits: int
    roomId: str | None
    timestamp: int
    balance: int  # the recipient's credits after the tip


class TipSent(Outbound):
    tipId: str
    clientTipId: str
    toUserId: str
    credits: int
    roomId: str | None
    timestamp: int
    balance: int  # the sender's credits after the tip


class TipCreditError(Outbound):
    """``creditError`` for a tip the sender cannot pay; nothing moved."""

    code: TipCreditCode = "insufficient_credits"
    kind: Literal["tip"] = "tip"
    message: str
    tipId: str
    clientTipId: str
    toUserId: str
    roomId: str | None
    required: int
    credits: int
    owed: int | None = None  # spending_blocked: credits a refunded purchase left owed
    rechargeUrl: str


class TipFailed(Outbound):
    """``error`` for a tip the worker refused (unknown recipient, reused clientTipId, invalid terms)."""

    code: str
    message: str
    event: Literal["sendTip"] = "sendTip"
    tipId: str
    clientTipId: str


class TipInfo(Outbound):
    toUserId: str
    credits: int


class TipMessage(NewMessage):
    """The ``newMessage {kind: "tip"}`` a room sees and keeps in its history."""

    kind: Literal["tip"] = "tip"
    tip: TipInfo
