"""Call signaling and the call meter at the edge (seed 003).

Signaling is relayed, never interpreted: each event goes to the other party's user
channel (``u/<user>``) through the Socket.IO Redis manager, so the parties may sit on
different nodes. Only the two parties of a call (kept in Redis, see
:mod:`ingress.call_registry`) can signal on it. Money is not decided here: accepting
a call, ending it, and the clients' own ``callStart``/``callHeartbeat``/``callEnd``
become :class:`~schemas.calls.CallMeter` commands for the billing worker.

Bounds (settings "calls and presence"): ``initiate-call`` and ``callStart`` are rate-limited per
caller (``CALL_RING_LIMITS``) and rings per callee (``CALL_CALLEE_RING_LIMITS``), in Redis so the
limits hold on every node; a caller has one call ringing at a time. A call has one meter: a
second ``callStart`` for it starts nothing. Only the caller, who pays, sends ``callHeartbeat``,
and at most one per call and ``CALL_HEARTBEAT_MIN_INTERVAL_S`` reaches billing (the others are
answered ``accepted`` and dropped). An offline callee and one that does not exist get the same
answer.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog
from pydantic import BaseModel
from redis.asyncio import Redis

from domain.calls import CallError, CallStateError, NotAParty, UnknownCall, check_call_id, check_parties
from domain.errors import DomainError
from domain.rate_limits import parse_rate_limits
from domain.sanitize import sanitize_text
from infra.publisher import CommandPublisher, PublishFailed
from infra.settings import Settings
from ingress.auth import Identity
from ingress.call_registry import CallRegistry, SignaledCall
from ingress.correlation import bind_command
from ingress.rate_limiter import LocalWindows, RateLimiter
from ingress.rejections import check_allowed, rate_limited
from ingress.socket_server import AckAwareServer
from schemas import queues
from schemas.calls import (
    CallMeter,
    CallPeerEvent,
    CallRef,
    CallSignal,
    CallStart,
    IncomingCall,
    InitiateCall,
    MeterAction,
    SignalRelay,
)
from schemas.channels import user_channel

log = structlog.get_logger(__name__)

Handler = Callable[..., Awaitable[dict[str, Any] | None]]


class MeterUnavailable(DomainError):
    code = "internal"


class CallSockets:
    """The call events; :class:`ingress.sockets.ChatSockets` binds them with its validation guard."""

    def __init__(
        self,
        sio: AckAwareServer,
        settings: Settings,
        publisher: CommandPublisher,
        registry: CallRegistry,
        caller_limits: RateLimiter,
        callee_limits: RateLimiter,
    ):
        self.sio = sio
        self.settings = settings
        self.publisher = publisher
        self.registry = registry
        self.caller_limits = caller_limits
        self.callee_limits = callee_limits
        self.signal_limits = LocalWindows(parse_rate_limits(settings.call_signal_limits))  # per socket

    def handlers(self) -> dict[str, tuple[Handler, type[BaseModel]]]:
        return {
            "initiate-call": (self.initiate_call, InitiateCall),
            "accept-call": (self.accept_call, CallRef),
            "reject-call": (self.reject_call, CallRef),
            "end-call": (self.end_call, CallRef),
            "signal": (self.signal, CallSignal),
            "callStart": (self.call_start, CallStart),
            "callHeartbeat": (self.call_heartbeat, CallRef),
            "callEnd": (self.call_end, CallRef),
        }

    # --- connection hooks -----------------------------------------------------------
    async def connected(self, sid: str, who: Identity) -> None:
        await self.registry.connected(sid, who.user_id)  # never raises

    def disconnected(self, sid: str, who: Identity) -> None:
        self.registry.disconnected(sid, who.user_id)  # memory now, Redis in the background
        self.signal_limits.forget(sid)

    # --- plumbing ---------------------------------------------------------------------
    async def _tell(self, event: str, user_id: str, data: BaseModel) -> None:
        await self.sio.emit(event, data.model_dump(mode="json", by_alias=True), room=user_channel(user_id))

    async def _call_of(self, who: Identity, call_id: str) -> tuple[SignaledCall, str]:
        """The signaled call and the other party; only a party may act on a call."""
        check_call_id(call_id)
        call = await self.registry.get(call_id)
        if call is None:
            raise UnknownCall(f"unknown call {call_id!r}: it was never started, or it is over")
        other = call.other(who.user_id)
        if other is None:
            raise NotAParty(f"you are not a party to call {call_id!r}")
        return call, other

    async def _limit_caller(self, caller: str) -> None:
        """Count a call attempt (ring or meter start) against the caller's limits."""
        decision = await self.caller_limits.hit(caller, str(uuid.uuid4()))
        if not decision.allowed:
            raise rate_limited("too many calls started", decision.retry_after_ms)

    async def _limit_ring(self, caller: str, callee: str) -> None:
        """One ringing call per caller, and a bounded number of rings per callee (whoever rings)."""
        if busy_ms := await self.registry.ringing_ms(caller):
            raise rate_limited("your previous call is still ringing; end it first", busy_ms)
        decision = await self.callee_limits.hit(callee, str(uuid.uuid4()))
        if not decision.allowed:
            raise rate_limited("this user was called too often", decision.retry_after_ms)

    async def _meter(
        self,
        action: MeterAction,
        who: Identity,
        call_id: str,
        event: str,
        *,
        caller_id: str | None = None,
        callee_id: str | None = None,
    ) -> None:
        command = CallMeter(
            command_id=str(uuid.uuid4()),
            action=action,
            call_id=call_id,
            sender_id=who.user_id,
            caller_id=caller_id,
            callee_id=callee_id,
            at_ms=int(time.time() * 1000),
            event=event,
        )
        bind_command(command)
        try:
            await self.publisher.publish(queues.BILLING_QUEUE, queues.CALL_METER_ACTOR, command)
        except PublishFailed:
            raise MeterUnavailable("the call meter could not be reached; nothing changed, retry") from None
        log.info("call.meter_published", action=action, call_id=call_id, user_id=who.user_id)

    # --- signaling ----------------------------------------------------------------------
    async def initiate_call(self, sid: str, who: Identity, payload: InitiateCall) -> dict[str, Any]:
        check_call_id(payload.callId)
        check_parties(who.user_id, payload.calleeId)
        await self._limit_caller(who.user_id)  # before the online check: probing it costs the same
        if not await self.registry.is_online(payload.calleeId):
            # An offline user and one that never existed get exactly this (the seed's availability check).
            notice = CallPeerEvent(callId=payload.callId, userId=payload.calleeId, reason="offline")
            await self.sio.emit("call-unavailable", notice.model_dump(mode="json"), to=sid)
            return {"status": "unavailable", "callId": payload.callId, "calleeId": payload.calleeId}
        await self._limit_ring(who.user_id, payload.calleeId)
        wanted = SignaledCall(who.user_id, payload.calleeId, who.name, "ringing")
        ring = await self.registry.ring(payload.callId, wanted)
        if ring.call is None:
            raise rate_limited("your previous call is still ringing; end it first", ring.busy_ms)
        stored = ring.call
        if (stored.caller, stored.callee) != (wanted.caller, wanted.callee):
            raise CallStateError(f"callId: {payload.callId!r} is another call's id; pick a new one")
        if stored.state != "ringing":
            raise CallStateError(f"call {payload.callId!r} is already in progress")
        name = sanitize_text(who.name)  # shown by the callee's UI, like a chat username
        incoming = IncomingCall(
            callId=payload.callId,
            callerId=who.user_id,
            callerName=name,
            calleeId=payload.calleeId,
            from_=who.user_id,
            name=name,
        )
        await self._tell("incoming-call", payload.calleeId, incoming)
        return {"status": "accepted", "callId": payload.callId}

    async def accept_call(self, sid: str, who: Identity, payload: CallRef) -> dict[str, Any]:
        call, caller = await self._call_of(who, payload.callId)
        if who.user_id != call.callee:
            raise NotAParty("only the callee can accept a call")
        if call.state != "ringing":
            raise CallStateError(f"call {payload.callId!r} was already accepted")
        if not await self.registry.transition(payload.callId, call, "active"):
            raise CallStateError(f"call {payload.callId!r} changed meanwhile (cancelled?)")
        try:  # the meter starts before the caller hears of it, so an accepted call is always billed
            await self._meter("start", who, payload.callId, "accept-call", caller_id=caller, callee_id=who.user_id)
        except MeterUnavailable:
            await self.registry.transition(payload.callId, replace(call, state="active"), "ringing")
            raise
        await self._tell("accept-call", caller, CallPeerEvent(callId=payload.callId, userId=who.user_id))
        return {"status": "accepted", "callId": payload.callId}

    async def reject_call(self, sid: str, who: Identity, payload: CallRef) -> dict[str, Any]:
        call, caller = await self._call_of(who, payload.callId)
        if who.user_id != call.callee:
            raise NotAParty("only the callee can reject a call; the caller ends it with end-call")
        if call.state != "ringing":
            raise CallStateError(f"call {payload.callId!r} is in progress; end it with end-call")
        if not await self.registry.transition(payload.callId, call, None):
            raise CallStateError(f"call {payload.callId!r} changed meanwhile")
        notice = CallPeerEvent(callId=payload.callId, userId=who.user_id, reason="rejected")
        await self._tell("reject-call", caller, notice)
        return {"status": "accepted", "callId": payload.callId}

    async def end_call(self, sid: str, who: Identity, payload: CallRef) -> dict[str, Any]:
        call, other = await self._call_of(who, payload.callId)
        if call.state == "active":
            await self._meter("end", who, payload.callId, "end-call")
        if not await self.registry.transition(payload.callId, call, None):
            raise CallStateError(f"call {payload.callId!r} changed meanwhile; retry")
        notice = CallPeerEvent(callId=payload.callId, userId=who.user_id, reason="hangup")
        await self._tell("end-call", other, notice)
        return {"status": "accepted", "callId": payload.callId}

    async def signal(self, sid: str, who: Identity, payload: CallSignal) -> dict[str, Any]:
        check_allowed(self.signal_limits.hit(sid), "too many signals")  # before any Redis read
        _, other = await self._call_of(who, payload.callId)
        size = len(json.dumps(payload.data, separators=(",", ":")).encode())
        if size > self.settings.call_signal_max_bytes:
            raise CallError(f"data: {size} bytes is over the {self.settings.call_signal_max_bytes}-byte limit")
        await self._tell("signal", other, SignalRelay(callId=payload.callId, from_=who.user_id, data=payload.data))
        return {"status": "accepted", "callId": payload.callId}

    # --- the meter, driven by the clients -------------------------------------------------
    async def call_start(self, sid: str, who: Identity, payload: CallStart) -> dict[str, Any]:
        check_call_id(payload.callId)
        check_parties(who.user_id, payload.calleeId)
        existing = await self.registry.get(payload.callId)
        if existing is None:
            await self._limit_caller(who.user_id)
            wanted = SignaledCall(who.user_id, payload.calleeId, who.name, "active")
            existing, new = await self.registry.start_metered(payload.callId, wanted)
            if new:
                try:
                    await self._meter(
                        "start", who, payload.callId, "callStart", caller_id=who.user_id, callee_id=payload.calleeId
                    )
                except MeterUnavailable:
                    await self.registry.transition(payload.callId, wanted, None)
                    raise
                return {"status": "accepted", "callId": payload.callId}
        if (existing.caller, existing.callee) != (who.user_id, payload.calleeId):
            raise CallStateError(f"callId: {payload.callId!r} is another call's id; pick a new one")
        if existing.state != "active":
            raise CallStateError(f"call {payload.callId!r} is ringing; its meter starts when the callee accepts")
        return {"status": "accepted", "callId": payload.callId}  # already metered: one meter per call

    async def call_heartbeat(self, sid: str, who: Identity, payload: CallRef) -> dict[str, Any]:
        call, _ = await self._call_of(who, payload.callId)
        if who.user_id != call.caller:
            raise NotAParty("only the caller, who pays, sends callHeartbeat")
        if call.state != "active":
            raise CallStateError(f"call {payload.callId!r} has not started")
        interval_ms = round(self.settings.call_heartbeat_min_interval_s * 1000)
        if await self.registry.claim_beat(payload.callId, interval_ms):  # else: one went out this interval
            try:
                await self._meter("heartbeat", who, payload.callId, "callHeartbeat")
            except MeterUnavailable:
                await self.registry.release_beat(payload.callId)
                raise
            await self.registry.keep_alive(payload.callId)
        return {"status": "accepted", "callId": payload.callId}

    async def call_end(self, sid: str, who: Identity, payload: CallRef) -> dict[str, Any]:
        call, _ = await self._call_of(who, payload.callId)
        if call.state != "active":
            raise CallStateError(f"call {payload.callId!r} has not started; end a ringing call with end-call")
        await self._meter("end", who, payload.callId, "callEnd")
        return {"status": "accepted", "callId": payload.callId}

    @classmethod
    def create(cls, sio: AckAwareServer, settings: Settings, publisher: CommandPublisher, redis: Redis) -> CallSockets:
        registry = CallRegistry(
            redis, settings.key_prefix, settings.node_id, settings.call_ring_timeout_s, settings.call_state_ttl_s
        )
        caller_limits = RateLimiter(redis, f"{settings.key_prefix}:calls", parse_rate_limits(settings.call_ring_limits))
        callee_limits = RateLimiter(
            redis, f"{settings.key_prefix}:rung", parse_rate_limits(settings.call_callee_ring_limits)
        )
        return cls(sio, settings, publisher, registry, caller_limits, callee_limits)
