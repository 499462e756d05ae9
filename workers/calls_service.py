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

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.calls import (
    CallError,
    CallStateError,
    NotAParty,
    UnknownCall,
    check_call_id,
    check_parties,
    minutes_started,
    paid_until_ms,
    plan_charges,
    split_minute,
)
from domain.errors import DomainError
from infra import inbox, ledger, receivables
from schemas.calls import CallEnded, CallMeter, CallStarted, EndReason
from schemas.channels import user_channel
from workers.effects import Outcome, replay
from workers.emits import Emit, emit

CALL_KIND = "call"
FEE_KIND = "call_fee"
TIMEOUT_COMMAND = "billing.call_timeout"
DROPPED_COMMAND = "billing.call_dropped"
# Why an account may not spend right now (an unpaid refund shortfall), or None if it may.
SpendCheck = Callable[[asyncpg.Connection, str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Terms:
    """The price list a call starts with; stored on the call, so later changes never reprice it."""

    price_per_minute: int
    fee_pct: int
    minute_ms: int


@dataclass(frozen=True, slots=True)
class Call:
    call_id: str
    caller_id: str
    callee_id: str
    status: str
    price_per_minute: int
    fee_pct: int
    minute_ms: int
    started_ms: int
    last_seen_ms: int
    ended_ms: int | None
    end_reason: str | None
    minutes_charged: int
    credits_charged: int


_COLUMNS = (
    "call_id, caller_id, callee_id, status, price_per_minute, fee_pct, minute_ms, started_ms,"
    " last_seen_ms, ended_ms, end_reason, minutes_charged, credits_charged"
)


async def _lock_call(conn: asyncpg.Connection, call_id: str) -> Call | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM calls WHERE call_id = $1 FOR UPDATE", call_id)
    return None if row is None else Call(**dict(row))


async def spend_block(conn: asyncpg.Connection, account: str) -> str | None:
    """A caller with an unpaid refund shortfall may not pay for a call (it is settled first if they can)."""
    balance = await ledger.lock_balance(conn, account)
    _, owed = await receivables.settle(conn, account, balance)
    return receivables.debt_message(owed) if owed else None


# --- commands ---------------------------------------------------------------------------


async def meter(
    pool: asyncpg.Pool, cmd: CallMeter, terms: Terms, signup_credits: int = 0, spend_block: SpendCheck | None = None
) -> Outcome:
    async with pool.acquire() as conn, conn.transaction():
        if (stored := await inbox.claim(conn, cmd.command_id, cmd.type, cmd.sender_id)) is not None:
            return replay(stored)
        try:
            check_call_id(cmd.call_id)
            if cmd.action == "start":
                return await _start(conn, cmd, terms, signup_credits, spend_block)
            call = await _lock_call(conn, cmd.call_id)
            if call is None:
                raise UnknownCall(f"unknown call {cmd.call_id!r}: start it first")
            if cmd.sender_id not in (call.caller_id, call.callee_id):
                raise NotAParty(f"you are not a party to call {cmd.call_id!r}")
            if cmd.action == "heartbeat" and cmd.sender_id != call.caller_id and call.status != "ended":
                raise NotAParty("only the caller, who pays, keeps a call's meter running")
        except DomainError as exc:
            return await _reject(conn, cmd, exc)
        if call.status == "ended":  # a late heartbeat or a second hang-up: tell the sender how it ended
            emits = [emit("callEnded", user_channel(cmd.sender_id), _ended(call))]
            await inbox.finish(conn, cmd.command_id, "applied", {"emits": emits, "call": cmd.call_id})
            return Outcome(True, "applied", emits)
        at = max(cmd.at_ms, call.started_ms)
        end_reason: EndReason | None = "hangup" if cmd.action == "end" else None
        emits = await _advance(conn, call, at, end_reason, signup_credits, spend_block)
        await inbox.finish(conn, cmd.command_id, "applied", {"emits": emits, "call": cmd.call_id})
        return Outcome(True, "applied", emits)


async def _start(
    conn: asyncpg.Connection, cmd: CallMeter, terms: Terms, signup_credits: int, spend_block: SpendCheck | None
) -> Outcome:
    if cmd.caller_id is None or cmd.callee_id is None:
        raise CallError("a call start names its caller and callee")
    check_parties(cmd.caller_id, cmd.callee_id)
    if cmd.sender_id not in (cmd.caller_id, cmd.callee_id):
        raise NotAParty("only a party can start a call")
    existing = await _lock_call(conn, cmd.call_id)
    if existing is not None:
        if (existing.caller_id, existing.callee_id) != (cmd.caller_id, cmd.callee_id):
            raise CallStateError(f"callId: {cmd.call_id!r} is another call's id; pick a new one")
        # The same call started twice (accept and callStart, or a retry): nothing changes.
        event, data = (
            ("callEnded", _ended(existing)) if existing.status == "ended" else ("callStarted", _started(existing))
        )
        emits = [emit(event, user_channel(cmd.sender_id), data)]
        await inbox.finish(conn, cmd.command_id, "applied", {"emits": emits, "call": cmd.call_id})
        return Outcome(True, "applied", emits)
    await conn.execute(
        "INSERT INTO calls (call_id, caller_id, callee_id, status, price_per_minute, fee_pct, minute_ms,"
        " started_ms, last_seen_ms) VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $7)",
        cmd.call_id, cmd.caller_id, cmd.callee_id, terms.price_per_minute, terms.fee_pct, terms.minute_ms,
        cmd.at_ms,
    )  # fmt: skip
    call = await _lock_call(conn, cmd.call_id)
    assert call is not None
    emits = await _advance(conn, call, cmd.at_ms, None, signup_credits, spend_block, starting=True)
    await inbox.finish(conn, cmd.command_id, "applied", {"emits": emits, "call": cmd.call_id})
    return Outcome(True, "applied", emits)


async def _reject(conn: asyncpg.Connection, cmd: CallMeter, exc: DomainError) -> Outcome:
    error = {"code": exc.code, "message": str(exc), "event": cmd.event, "callId": cmd.call_id}
    emits = [emit("error", user_channel(cmd.sender_id), error)]
    await inbox.finish(conn, cmd.command_id, "rejected", {"emits": emits, "call": cmd.call_id})
    return Outcome(True, "rejected", emits)


# --- the meter ----------------------------------------------------------------------------


async def _advance(
    conn: asyncpg.Connection,
    call: Call,
    at_ms: int,
    end_reason: EndReason | None,
    signup_credits: int,
    spend_block: SpendCheck | None,
    *,
    starting: bool = False,
) -> list[Emit]:
    """Charge every minute started by ``at_ms`` that the caller can pay; end the call if asked or short."""
    caller, callee = ledger.user_account(call.caller_id), ledger.user_account(call.callee_id)
    balances = {}
    for account in sorted((caller, callee)):  # one lock order, so calls between two users cannot deadlock
        balances[account] = await ledger.lock_or_open(conn, account, signup_credits)
    due = minutes_started(call.started_ms, at_ms, call.minute_ms)
    blocked = spend_block is not None and due > call.minutes_charged and await spend_block(conn, caller)
    if spend_block is not None:  # settling a debt may have moved credits: read the balance again
        balances[caller] = await ledger.lock_balance(conn, caller)
    if blocked:
        charge, short, reason = (), True, "spending_blocked"
    else:
        step = plan_charges(call.minutes_charged, due, balances[caller].credits, call.price_per_minute)
        charge, short, reason = step.charge_minutes, step.short, "insufficient_credits"
    split = split_minute(call.price_per_minute, call.fee_pct)
    for minute in charge:
        reference, memo = f"{call.call_id}:{minute}", f"call {call.call_id} minute {minute + 1}"
        if split.to_callee:
            await ledger.transfer(conn, caller, callee, split.to_callee, CALL_KIND, reference, memo)
        if split.fee:
            await ledger.transfer(conn, caller, ledger.REVENUE, split.fee, FEE_KIND, reference, memo)
    minutes = call.minutes_charged + len(charge)
    ended_ms: int | None = None
    final_reason: str | None = None
    if short:
        ended_ms, final_reason = min(at_ms, paid_until_ms(call.started_ms, minutes, call.minute_ms)), reason
    elif end_reason is not None:
        ended_ms, final_reason = at_ms, end_reason
    row = await conn.fetchrow(
        "UPDATE calls SET minutes_charged = $2, credits_charged = credits_charged + $3,"
        " last_seen_ms = GREATEST(last_seen_ms, $4),"
        " status = CASE WHEN $5::bigint IS NULL THEN status ELSE 'ended' END,"
        " ended_ms = $5, end_reason = $6, updated_at = now() WHERE call_id = $1 RETURNING " + _COLUMNS,
        call.call_id, minutes, len(charge) * call.price_per_minute, at_ms, ended_ms, final_reason,
    )  # fmt: skip
    updated = Call(**dict(row))
    parties = (call.caller_id, call.callee_id)
    emits = []
    if starting and updated.status != "ended":
        emits += [emit("callStarted", user_channel(u), _started(updated)) for u in parties]
    if updated.status == "ended":
        emits += [emit("callEnded", user_channel(u), _ended(updated)) for u in parties]
    return emits


async def expire(
    pool: asyncpg.Pool, call_id: str, now_ms: int, timeout_ms: int, signup_credits: int = 0,
    spend_block: SpendCheck | None = None,
) -> Outcome | None:  # fmt: skip
    """End a call whose heartbeats stopped ``timeout_ms`` ago, billed to its last heartbeat.

    None if the call is not (or no longer) stale: it ended, or a heartbeat arrived meanwhile.
    Several sweepers may try the same call; the row lock lets one of them end it.
    """
    async with pool.acquire() as conn, conn.transaction():
        call = await _lock_call(conn, call_id)
        if call is None or call.status != "active" or call.last_seen_ms > now_ms - timeout_ms:
            return None
        command_id = f"call-timeout:{call_id}"
        if (stored := await inbox.claim(conn, command_id, TIMEOUT_COMMAND, call.caller_id)) is not None:
            return replay(stored)
        emits = await _advance(conn, call, call.last_seen_ms, "timeout", signup_credits, spend_block)
        await inbox.finish(conn, command_id, "applied", {"emits": emits, "call": call_id})
        return Outcome(True, "applied", emits)


@dataclass(frozen=True, slots=True)
class ActiveCall:
    call_id: str
    caller_id: str
    callee_id: str
    started_ms: int
    last_seen_ms: int


async def active_calls(pool: asyncpg.Pool, limit: int = 2000) -> list[ActiveCall]:
    rows = await pool.fetch(
        "SELECT call_id, caller_id, callee_id, started_ms, last_seen_ms FROM calls WHERE status = 'active'"
        " ORDER BY last_seen_ms LIMIT $1",
        limit,
    )
    return [ActiveCall(**dict(r)) for r in rows]


async def end_dropped(
    pool: asyncpg.Pool, call_id: str, dropped_ms: int, signup_credits: int = 0, spend_block: SpendCheck | None = None
) -> Outcome | None:
    """End a call one of whose parties dropped off at ``dropped_ms`` and stayed away past the grace.

    Billed up to the drop (minutes the caller's heartbeats already paid stay paid). None if the
    call is no longer active. Several sweepers may try; the row lock and a fixed inbox id end it once.
    """
    async with pool.acquire() as conn, conn.transaction():
        call = await _lock_call(conn, call_id)
        if call is None or call.status != "active":
            return None
        command_id = f"call-dropped:{call_id}"
        if (stored := await inbox.claim(conn, command_id, DROPPED_COMMAND, call.caller_id)) is not None:
            return replay(stored)
        at = max(dropped_ms, call.started_ms)
        emits = await _advance(conn, call, at, "disconnected", signup_credits, spend_block)
        await inbox.finish(conn, command_id, "applied", {"emits": emits, "call": call_id})
        return Outcome(True, "applied", emits)


async def stale_calls(pool: asyncpg.Pool, now_ms: int, timeout_ms: int, limit: int = 500) -> list[str]:
    rows = await pool.fetch(
        "SELECT call_id FROM calls WHERE status = 'active' AND last_seen_ms <= $1 ORDER BY last_seen_ms LIMIT $2",
        now_ms - timeout_ms,
        limit,
    )
    return [r["call_id"] for r in rows]


# --- events -------------------------------------------------------------------------------


def _started(call: Call) -> dict[str, Any]:
    return CallStarted(
        callId=call.call_id, callerId=call.caller_id, calleeId=call.callee_id, startedAt=call.started_ms,
        pricePerMinute=call.price_per_minute, feePct=call.fee_pct, minuteSeconds=call.minute_ms / 1000,
        minutesCharged=call.minutes_charged, creditsCharged=call.credits_charged,
    ).model_dump(mode="json")  # fmt: skip


def _ended(call: Call) -> dict[str, Any]:
    return CallEnded(
        callId=call.call_id, reason=call.end_reason, callerId=call.caller_id, calleeId=call.callee_id,
        startedAt=call.started_ms, endedAt=call.ended_ms, minutesCharged=call.minutes_charged,
        creditsCharged=call.credits_charged,
    ).model_dump(mode="json")  # fmt: skip
