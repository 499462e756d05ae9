"""Apply call meter commands: one transaction holds the inbox row, the call row and the minutes' transfers.

Every started minute ``k`` of call ``c`` is charged once, as ledger transfers with
reference ``c:k``: kind ``call`` (caller -> callee, the price minus the fee) and kind
``call_fee`` (caller -> ``system:revenue``). The call row, locked ``FOR UPDATE``, counts the
minutes charged, and ``(kind, reference)`` is unique in the ledger, so neither a
redelivered command nor two heartbeats racing for the same minute can charge it twice.

Only the caller's own heartbeats (and the start and hang-ups) move a call on: the callee cannot
keep the caller's meter running. A call also ends when either party has been disconnected for
longer than the grace period (:func:`end_dropped`, driven by the sweeper in workers.calls),
billed up to the moment that party dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.calls import (
    CallError,
    CallStateError,
    MeterStep,
    NotAParty,
    UnknownCall,
    check_call_id,
    check_parties,
    minutes_started,
    paid_until_ms,
    split_minute,
)
from domain.errors import DomainError
from domain.spending import InDebt, Minutes, decide_spend
from infra import calls, inbox, ledger, receivables
from infra.calls import ActiveCall as ActiveCall
from infra.calls import Call
from infra.calls import active_calls as active_calls
from infra.calls import stale_calls as stale_calls
from infra.db import Conn
from schemas.calls import CallEnded, CallMeter, CallStarted, EndReason
from schemas.channels import user_channel
from workers.effects import Outcome
from workers.emits import Emit, emit
from workers.unit_of_work import CommandTx, command_tx, commands_tx

CALL_KIND = "call"
FEE_KIND = "call_fee"
TIMEOUT_COMMAND = "billing.call_timeout"
DROPPED_COMMAND = "billing.call_dropped"


@dataclass(frozen=True, slots=True)
class Terms:
    """The price list a call starts with; stored on the call, so later changes never reprice it."""

    price_per_minute: int
    fee_pct: int
    minute_ms: int


# --- commands ---------------------------------------------------------------------------


async def meter(pool: asyncpg.Pool, cmd: CallMeter, terms: Terms, signup_credits: int = 0) -> Outcome:
    async with command_tx(pool, inbox.Key(cmd.command_id, cmd.type, cmd.sender_id)) as tx:
        if tx.replayed:
            return tx.replayed
        conn = tx.conn
        try:
            check_call_id(cmd.call_id)
            if cmd.action == "start":
                return await _start(tx, cmd, terms, signup_credits)
            call = await calls.lock(conn, cmd.call_id)
            if call is None:
                raise UnknownCall(f"unknown call {cmd.call_id!r}: start it first")
            if cmd.sender_id not in (call.caller_id, call.callee_id):
                raise NotAParty(f"you are not a party to call {cmd.call_id!r}")
            if cmd.action == "heartbeat" and cmd.sender_id != call.caller_id and call.status != "ended":
                raise NotAParty("only the caller, who pays, keeps a call's meter running")
        except DomainError as exc:
            return _reject(tx, cmd, exc)
        if call.status == "ended":  # a late heartbeat or a second hang-up: tell the sender how it ended
            return tx.apply([emit("callEnded", user_channel(cmd.sender_id), _ended(call))], call=cmd.call_id)
        at = max(cmd.at_ms, call.started_ms)
        end_reason: EndReason | None = "hangup" if cmd.action == "end" else None
        emits = await _advance(conn, call, at, end_reason, signup_credits)
        return tx.apply(emits, call=cmd.call_id)


async def _start(tx: CommandTx, cmd: CallMeter, terms: Terms, signup_credits: int) -> Outcome:
    if cmd.caller_id is None or cmd.callee_id is None:
        raise CallError("a call start names its caller and callee")
    check_parties(cmd.caller_id, cmd.callee_id)
    if cmd.sender_id not in (cmd.caller_id, cmd.callee_id):
        raise NotAParty("only a party can start a call")
    existing = await calls.lock(tx.conn, cmd.call_id)
    if existing is not None:
        if (existing.caller_id, existing.callee_id) != (cmd.caller_id, cmd.callee_id):
            raise CallStateError(f"callId: {cmd.call_id!r} is another call's id; pick a new one")
        # The same call started twice (accept and callStart, or a retry): nothing changes.
        event, data = (
            ("callEnded", _ended(existing)) if existing.status == "ended" else ("callStarted", _started(existing))
        )
        return tx.apply([emit(event, user_channel(cmd.sender_id), data)], call=cmd.call_id)
    call = await calls.start(
        tx.conn,
        cmd.call_id,
        cmd.caller_id,
        cmd.callee_id,
        price_per_minute=terms.price_per_minute,
        fee_pct=terms.fee_pct,
        minute_ms=terms.minute_ms,
        started_ms=cmd.at_ms,
    )
    emits = await _advance(tx.conn, call, cmd.at_ms, None, signup_credits, starting=True)
    return tx.apply(emits, call=cmd.call_id)


def _reject(tx: CommandTx, cmd: CallMeter, exc: DomainError) -> Outcome:
    error = {"code": exc.code, "message": str(exc), "event": cmd.event, "callId": cmd.call_id}
    return tx.reject([emit("error", user_channel(cmd.sender_id), error)], call=cmd.call_id)


# --- the meter ----------------------------------------------------------------------------


async def _advance(
    conn: Conn,
    call: Call,
    at_ms: int,
    end_reason: EndReason | None,
    signup_credits: int,
    *,
    starting: bool = False,
) -> list[Emit]:
    """Charge every minute started by ``at_ms`` that the caller can pay; end the call if asked or short."""
    caller, callee = ledger.user_account(call.caller_id), ledger.user_account(call.callee_id)
    balances = {}
    for account in sorted((caller, callee)):  # one lock order, so calls between two users cannot deadlock
        balances[account] = await ledger.lock_or_open(conn, account, signup_credits)
    due = minutes_started(call.started_ms, at_ms, call.minute_ms)
    # An unpaid refund shortfall is settled from the caller's credits first, and blocks paying for minutes.
    minutes = Minutes(call.minutes_charged, due, call.price_per_minute)
    spend = decide_spend(balances[caller], await receivables.open_debts(conn, caller), minutes)
    await receivables.store_settlements(conn, caller, spend.settlements)
    charge: tuple[int, ...]
    reason: EndReason
    match spend.verdict:
        case InDebt():
            charge, short, reason = (), True, "spending_blocked"
        case MeterStep(charge_minutes, step_short):
            charge, short, reason = charge_minutes, step_short, "insufficient_credits"
        case verdict:
            raise AssertionError(f"a call minute cannot end as {verdict!r}")
    split = split_minute(call.price_per_minute, call.fee_pct)
    for minute in charge:
        reference, memo = f"{call.call_id}:{minute}", f"call {call.call_id} minute {minute + 1}"
        if split.to_callee:
            await ledger.transfer(conn, caller, callee, split.to_callee, CALL_KIND, reference, memo)
        if split.fee:
            await ledger.transfer(conn, caller, ledger.REVENUE, split.fee, FEE_KIND, reference, memo)
    charged = call.minutes_charged + len(charge)
    ended_ms: int | None = None
    final_reason: EndReason | None = None
    if short:
        ended_ms, final_reason = min(at_ms, paid_until_ms(call.started_ms, charged, call.minute_ms)), reason
    elif end_reason is not None:
        ended_ms, final_reason = at_ms, end_reason
    updated = await calls.store_progress(
        conn,
        call.call_id,
        minutes_charged=charged,
        credits_added=len(charge) * call.price_per_minute,
        seen_ms=at_ms,
        ended_ms=ended_ms,
        end_reason=final_reason,
    )
    parties = (call.caller_id, call.callee_id)
    emits = []
    if starting and updated.status != "ended":
        emits += [emit("callStarted", user_channel(u), _started(updated)) for u in parties]
    if updated.status == "ended":
        emits += [emit("callEnded", user_channel(u), _ended(updated)) for u in parties]
    return emits


async def expire(
    pool: asyncpg.Pool, call_id: str, now_ms: int, timeout_ms: int, signup_credits: int = 0
) -> Outcome | None:
    """End a call whose heartbeats stopped ``timeout_ms`` ago, billed to its last heartbeat.

    None if the call is not (or no longer) stale: it ended, or a heartbeat arrived meanwhile.
    Several sweepers may try the same call; the row lock lets one of them end it.
    """
    async with pool.acquire() as conn, conn.transaction():
        call = await calls.lock(conn, call_id)
        if call is None or call.status != "active" or call.last_seen_ms > now_ms - timeout_ms:
            return None
        # Claimed only once the call is known to be stale, in the same transaction as its row lock.
        key = inbox.Key(f"call-timeout:{call_id}", TIMEOUT_COMMAND, call.caller_id)
        async with commands_tx(conn, [key]) as (tx,):
            if tx.replayed:
                return tx.replayed
            emits = await _advance(conn, call, call.last_seen_ms, "timeout", signup_credits)
            return tx.apply(emits, call=call_id)


async def end_dropped(pool: asyncpg.Pool, call_id: str, dropped_ms: int, signup_credits: int = 0) -> Outcome | None:
    """End a call one of whose parties dropped off at ``dropped_ms`` and stayed away past the grace.

    Billed up to the drop (minutes the caller's heartbeats already paid stay paid). None if the
    call is no longer active. Several sweepers may try; the row lock and a fixed inbox id end it once.
    """
    async with pool.acquire() as conn, conn.transaction():
        call = await calls.lock(conn, call_id)
        if call is None or call.status != "active":
            return None
        key = inbox.Key(f"call-dropped:{call_id}", DROPPED_COMMAND, call.caller_id)
        async with commands_tx(conn, [key]) as (tx,):
            if tx.replayed:
                return tx.replayed
            emits = await _advance(conn, call, max(dropped_ms, call.started_ms), "disconnected", signup_credits)
            return tx.apply(emits, call=call_id)


# --- events -------------------------------------------------------------------------------


def _started(call: Call) -> dict[str, Any]:
    return CallStarted(
        callId=call.call_id,
        callerId=call.caller_id,
        calleeId=call.callee_id,
        startedAt=call.started_ms,
        pricePerMinute=call.price_per_minute,
        feePct=call.fee_pct,
        minuteSeconds=call.minute_ms / 1000,
        minutesCharged=call.minutes_charged,
        creditsCharged=call.credits_charged,
    ).model_dump(mode="json")


def _ended(call: Call) -> dict[str, Any]:
    """``callEnded`` of a call that has ended (its end time and reason are stored)."""
    assert call.ended_ms is not None and call.end_reason is not None, f"call {call.call_id} has not ended"
    return CallEnded(
        callId=call.call_id,
        reason=call.end_reason,
        callerId=call.caller_id,
        calleeId=call.callee_id,
        startedAt=call.started_ms,
        endedAt=call.ended_ms,
        minutesCharged=call.minutes_charged,
        creditsCharged=call.credits_charged,
    ).model_dump(mode="json")
