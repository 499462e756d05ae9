"""Calls (seed 003): signaling payloads, the billing queue's meter command and the events clients get.

Signaling (``initiate-call``, ``accept-call``, ``reject-call``, ``end-call``, ``signal``) is relayed
by ingress through Redis to the other party's user channel. Billing (``callStart``,
``callHeartbeat``, ``callEnd``, and accepting or ending a signaled call) becomes a
:class:`CallMeter` command on the ``billing`` queue.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from schemas.base import Command, Inbound, Outbound

CallIdField = Field(min_length=1, max_length=128)  # the rule itself is domain.calls.check_call_id
UserIdField = Field(min_length=1, max_length=128)


def signaling_key(key_prefix: str, call_id: str) -> str:
    """The Redis key of a signaled call's state: written by ingress, dropped by billing when it ends a call."""
    return f"{key_prefix}:call:{call_id}"


# --- client -> server ---------------------------------------------------------


class InitiateCall(Inbound):
    callId: str = CallIdField
    calleeId: str = UserIdField


class CallRef(Inbound):
    callId: str = CallIdField


class CallSignal(Inbound):
    """SDP offers/answers and ICE candidates, relayed untouched (the size is capped by ingress)."""

    callId: str = CallIdField
    data: dict[str, Any] | str


CallStart = InitiateCall  # callStart {callId, calleeId}: the sender is the caller, who pays


# --- the billing queue --------------------------------------------------------

MeterAction = Literal["start", "heartbeat", "end"]
# "disconnected": a party had no socket for CALL_DISCONNECT_GRACE_S; billed up to when they dropped.
EndReason = Literal["hangup", "insufficient_credits", "timeout", "spending_blocked", "disconnected"]


class CallMeter(Command):
    """Start, keep alive or stop a call's meter. ``at_ms`` is when ingress accepted it.

    ``caller_id``/``callee_id`` are required for ``start``; ``sender_id`` is who asked
    (the callee, when accepting a signaled call starts the meter).
    """

    type: Literal["billing.call_meter"] = "billing.call_meter"
    command_id: str
    action: MeterAction
    call_id: str = CallIdField
    sender_id: str
    caller_id: str | None = None
    callee_id: str | None = None
    at_ms: int = Field(ge=0)
    event: str  # the client event that caused it, named in errors


# --- server -> client ---------------------------------------------------------


class IncomingCall(Outbound):
    callId: str
    callerId: str
    callerName: str
    calleeId: str
    # The seed's SimplePeer clients read ``from`` and ``name``.
    from_: str = Field(serialization_alias="from")
    name: str


class CallPeerEvent(Outbound):
    """To one party: ``accept-call``, ``reject-call``, ``end-call`` (relayed under the seed's own
    names) and ``call-unavailable``."""

    callId: str
    userId: str  # the other party, who caused it
    reason: str | None = None


class SignalRelay(Outbound):
    callId: str
    from_: str = Field(serialization_alias="from")
    data: dict[str, Any] | str


class CallStarted(Outbound):
    callId: str
    callerId: str
    calleeId: str
    startedAt: int  # epoch ms
    pricePerMinute: int
    feePct: int
    minuteSeconds: float
    minutesCharged: int
    creditsCharged: int


class CallEnded(Outbound):
    callId: str
    reason: EndReason
    callerId: str
    calleeId: str
    startedAt: int
    endedAt: int  # epoch ms; where billing stopped
    minutesCharged: int
    creditsCharged: int
