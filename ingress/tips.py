"""``sendTip`` at the edge: check the shape and the sender, then hand the tip to the billing queue.

Whether the sender can pay is decided by the billing worker, inside the transaction
that moves the credits; ingress only refuses what can never be valid.
"""

from __future__ import annotations

import time

from domain.channels import conversation_room_tenant
from domain.tips import InvalidTip, check_tip
from ingress.auth import Identity
from schemas.tips import SendTip, SendTipCommand, tip_ids


def tip_command(who: Identity, payload: SendTip, max_credits: int) -> SendTipCommand:
    """The billing command for a tip; raises a DomainError for a tip that can never be valid."""
    check_tip(who.user_id, payload.toUserId, payload.credits, max_credits)
    if payload.roomId is not None and conversation_room_tenant(payload.roomId) is not None:
        raise InvalidTip("roomId: tips cannot be sent in a customer conversation")
    command_id, tip_id = tip_ids(who.user_id, payload.clientTipId)
    return SendTipCommand(
        command_id=command_id,
        tip_id=tip_id,
        user_id=who.user_id,
        username=who.name,
        to_user_id=payload.toUserId,
        credits=payload.credits,
        room_id=payload.roomId,
        client_tip_id=payload.clientTipId,
        accepted_at_ms=int(time.time() * 1000),
    )
