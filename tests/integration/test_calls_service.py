"""Per-minute call billing against the real PostgreSQL, with minute boundaries driven by command timestamps."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from infra import grants
from infra import ledger as ledger_repo
from schemas.calls import CallMeter
from workers import calls_service

MINUTE_MS = 60_000
T0 = 1_800_000_000_000  # a fixed start; every boundary below is exact
TERMS = calls_service.Terms(price_per_minute=7, fee_pct=15, minute_ms=MINUTE_MS)  # fee floor(1.05) = 1, callee 6


def uid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def meter(action: str, call_id: str, sender: str, at_ms: int, **parties: str) -> CallMeter:
    event = {"start": "callStart", "heartbeat": "callHeartbeat", "end": "callEnd"}[action]
    return CallMeter(
        command_id=str(uuid.uuid4()),
        action=action,
        call_id=call_id,
        sender_id=sender,
        at_ms=at_ms,
        event=event,
        **parties,
    )


async def apply(pool, cmd: CallMeter, terms: calls_service.Terms = TERMS):
    return await calls_service.meter(pool, cmd, terms, 0)


async def credits(pool, user: str) -> int:
    return await pool.fetchval("SELECT credits FROM accounts WHERE account_id = $1", ledger_repo.user_account(user))


async def call_row(pool, call_id: str):
    return await pool.fetchrow("SELECT * FROM calls WHERE call_id = $1", call_id)


async def movements(pool, call_id: str) -> list[tuple[str, str, int]]:
    """(kind, reference, amount received) of every transfer of a call, in order."""
    rows = await pool.fetch(
        "SELECT t.kind, t.reference, p.amount FROM ledger_transactions t JOIN ledger_postings p USING (txn_id)"
        " WHERE t.kind IN ('call', 'call_fee') AND t.reference LIKE $1 AND p.amount > 0 ORDER BY t.txn_id",
        f"{call_id}:%",
    )
    return [(r["kind"], r["reference"], r["amount"]) for r in rows]


async def start_call(pool, credits_: int):
    caller, callee, call_id = uid("caller"), uid("callee"), uid("call")
    if credits_:
        await grants.grant(pool, ledger_repo.user_account(caller), credits_, "test", "k")
    outcome = await apply(pool, meter("start", call_id, caller, T0, caller_id=caller, callee_id=callee))
    return caller, callee, call_id, outcome


async def test_each_started_minute_is_charged_once_with_an_exact_fee_split(ledger):
    revenue_before = await ledger.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM ledger_postings WHERE account_id = 'system:revenue'"
    )
    caller, callee, call_id, outcome = await start_call(ledger, 100)
    assert outcome.status == "applied"
    assert [e["event"] for e in outcome.emits] == ["callStarted", "callStarted"]
    assert await credits(ledger, caller) == 93  # minute 1 is prepaid at the start

    await apply(ledger, meter("heartbeat", call_id, caller, T0 + MINUTE_MS - 1))  # still minute 1
    assert await credits(ledger, caller) == 93
    await apply(ledger, meter("heartbeat", call_id, caller, T0 + MINUTE_MS))  # minute 2 starts
    assert await credits(ledger, caller) == 86
    end = await apply(ledger, meter("end", call_id, caller, T0 + 2 * MINUTE_MS + 30_000))  # in minute 3
    ended = [e for e in end.emits if e["event"] == "callEnded"]
    assert {e["room"] for e in ended} == {f"u/{caller}", f"u/{callee}"}
    assert ended[0]["data"]["reason"] == "hangup"
    assert (ended[0]["data"]["minutesCharged"], ended[0]["data"]["creditsCharged"]) == (3, 21)

    assert await credits(ledger, caller) == 79
    assert await credits(ledger, callee) == 18  # 3 x 6
    revenue = await ledger.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM ledger_postings WHERE account_id = 'system:revenue'"
    )
    assert revenue - revenue_before == 3  # 3 x floor(7 * 15 / 100)
    assert await movements(ledger, call_id) == [
        (kind, f"{call_id}:{m}", amount) for m in range(3) for kind, amount in (("call", 6), ("call_fee", 1))
    ]
    row = await call_row(ledger, call_id)
    assert (row["status"], row["end_reason"], row["ended_ms"]) == ("ended", "hangup", T0 + 2 * MINUTE_MS + 30_000)


@pytest.mark.parametrize(("price", "pct", "to_callee", "fee"), [(10, 0, 10, 0), (10, 100, 0, 10), (3, 50, 2, 1)])
async def test_fee_edges_still_sum_to_the_price(ledger, price, pct, to_callee, fee):
    terms = calls_service.Terms(price, pct, MINUTE_MS)
    caller, callee, call_id = uid("caller"), uid("callee"), uid("call")
    await grants.grant(ledger, f"user:{caller}", 50, "test", "k")
    await apply(ledger, meter("start", call_id, caller, T0, caller_id=caller, callee_id=callee), terms)
    await apply(ledger, meter("end", call_id, callee, T0 + 1), terms)
    assert await credits(ledger, caller) == 50 - price
    assert await credits(ledger, callee) == to_callee
    assert sum(a for k, _, a in await movements(ledger, call_id) if k == "call_fee") == fee


async def test_a_redelivered_command_charges_once(ledger):
    caller, _callee, call_id, _ = await start_call(ledger, 100)
    heartbeat = meter("heartbeat", call_id, caller, T0 + 5 * MINUTE_MS)
    first = await apply(ledger, heartbeat)
    again = [await apply(ledger, heartbeat) for _ in range(4)]
    assert first.fresh and not any(o.fresh for o in again)
    assert all(o.emits == first.emits for o in again)
    assert await credits(ledger, caller) == 100 - 6 * 7
    assert len(await movements(ledger, call_id)) == 12


async def test_concurrent_heartbeats_for_the_same_minutes_charge_each_minute_once(ledger):
    caller, _callee, call_id, _ = await start_call(ledger, 1000)
    beats = [meter("heartbeat", call_id, caller, T0 + 3 * MINUTE_MS + i) for i in range(12)]
    await asyncio.gather(*(apply(ledger, b) for b in beats))
    assert await credits(ledger, caller) == 1000 - 4 * 7
    row = await call_row(ledger, call_id)
    assert (row["minutes_charged"], row["credits_charged"], row["last_seen_ms"]) == (4, 28, T0 + 3 * MINUTE_MS + 11)


async def test_a_caller_who_cannot_pay_the_next_minute_ends_the_call_for_both(ledger):
    caller, callee, call_id, _ = await start_call(ledger, 2 * 7 + 6)  # two minutes and 6 credits
    outcome = await apply(ledger, meter("heartbeat", call_id, caller, T0 + 2 * MINUTE_MS + 10_000))
    ended = [e for e in outcome.emits if e["event"] == "callEnded"]
    assert {e["room"] for e in ended} == {f"u/{caller}", f"u/{callee}"}
    data = ended[0]["data"]
    assert (data["reason"], data["minutesCharged"], data["endedAt"]) == ("insufficient_credits", 2, T0 + 2 * MINUTE_MS)
    assert await credits(ledger, caller) == 6
    assert await credits(ledger, callee) == 12
    # A later heartbeat or hang-up changes nothing and tells the sender how it ended.
    late = await apply(ledger, meter("end", call_id, caller, T0 + 9 * MINUTE_MS))
    assert [(e["event"], e["room"]) for e in late.emits] == [("callEnded", f"u/{caller}")]
    assert await credits(ledger, caller) == 6


async def test_a_caller_without_credits_cannot_start(ledger):
    _caller, _callee, call_id, outcome = await start_call(ledger, 0)
    assert [e["event"] for e in outcome.emits] == ["callEnded", "callEnded"]
    assert outcome.emits[0]["data"]["reason"] == "insufficient_credits"
    assert outcome.emits[0]["data"]["minutesCharged"] == 0
    assert await movements(ledger, call_id) == []


async def test_a_stale_call_is_ended_and_billed_to_its_last_heartbeat(ledger):
    caller, _callee, call_id, _ = await start_call(ledger, 100)
    last = T0 + MINUTE_MS + 5_000  # in minute 2
    await apply(ledger, meter("heartbeat", call_id, caller, last))
    timeout = 90_000
    assert await calls_service.expire(ledger, call_id, last + timeout - 1, timeout) is None  # not stale yet
    assert call_id not in await calls_service.stale_calls(ledger, last + timeout - 1, timeout)
    assert call_id in await calls_service.stale_calls(ledger, last + timeout, timeout)
    outcome = await calls_service.expire(ledger, call_id, last + 10 * MINUTE_MS, timeout)
    assert outcome is not None and outcome.fresh
    data = outcome.emits[0]["data"]
    assert (data["reason"], data["endedAt"], data["minutesCharged"]) == ("timeout", last, 2)
    assert await credits(ledger, caller) == 100 - 14
    assert await calls_service.expire(ledger, call_id, last + 20 * MINUTE_MS, timeout) is None  # once


async def test_the_callees_heartbeats_never_move_the_callers_meter(ledger):
    caller, callee, call_id, _ = await start_call(ledger, 1000)
    for minute in range(1, 6):  # the caller dropped off; the callee keeps beating
        outcome = await apply(ledger, meter("heartbeat", call_id, callee, T0 + minute * MINUTE_MS))
        assert outcome.status == "rejected"
        [error] = outcome.emits
        assert (error["room"], error["data"]["code"]) == (f"u/{callee}", "forbidden")
    row = await call_row(ledger, call_id)
    assert (row["minutes_charged"], row["last_seen_ms"], row["status"]) == (1, T0, "active")
    assert await credits(ledger, caller) == 1000 - 7
    # Hanging up still works from either side.
    ended = await apply(ledger, meter("end", call_id, callee, T0 + 30_000))
    assert ended.emits[0]["data"]["reason"] == "hangup"


async def test_a_call_whose_party_dropped_is_ended_at_the_drop(ledger):
    caller, _callee, call_id, _ = await start_call(ledger, 1000)
    await apply(ledger, meter("heartbeat", call_id, caller, T0 + MINUTE_MS + 1_000))  # minute 2 paid
    assert call_id in [c.call_id for c in await calls_service.active_calls(ledger)]
    dropped = T0 + 3 * MINUTE_MS + 500  # in minute 4
    outcome = await calls_service.end_dropped(ledger, call_id, dropped)
    assert outcome is not None and outcome.fresh
    data = outcome.emits[0]["data"]
    assert (data["reason"], data["endedAt"], data["minutesCharged"], data["creditsCharged"]) == (
        "disconnected",
        dropped,
        4,
        28,
    )
    assert {e["room"] for e in outcome.emits} == {f"u/{caller}", f"u/{_callee}"}
    assert await credits(ledger, caller) == 1000 - 28
    assert await calls_service.end_dropped(ledger, call_id, dropped + MINUTE_MS) is None  # once
    assert call_id not in [c.call_id for c in await calls_service.active_calls(ledger)]


async def test_a_drop_before_the_start_ends_the_call_at_its_start(ledger):
    caller, _callee, call_id, _ = await start_call(ledger, 1000)
    outcome = await calls_service.end_dropped(ledger, call_id, T0 - 3_600_000)  # the callee left an hour before
    assert outcome is not None
    assert (outcome.emits[0]["data"]["endedAt"], outcome.emits[0]["data"]["minutesCharged"]) == (T0, 1)
    assert await credits(ledger, caller) == 1000 - 7


async def test_bad_meter_commands_get_clear_errors_and_change_nothing(ledger):
    caller, callee, call_id, _ = await start_call(ledger, 100)
    stranger = uid("stranger")
    cases = [
        (meter("heartbeat", uid("nocall"), caller, T0), "unknown_call"),
        (meter("heartbeat", call_id, stranger, T0 + 9 * MINUTE_MS), "forbidden"),
        (meter("end", call_id, stranger, T0 + 9 * MINUTE_MS), "forbidden"),
        (meter("start", call_id, stranger, T0, caller_id=stranger, callee_id=callee), "call_state"),
        (meter("start", uid("call"), caller, T0, caller_id=caller, callee_id=caller), "bad_request"),
        (meter("start", "bad id!", caller, T0, caller_id=caller, callee_id=callee), "bad_request"),
    ]
    for cmd, code in cases:
        outcome = await apply(ledger, cmd)
        assert outcome.status == "rejected"
        [error] = outcome.emits
        assert (error["event"], error["room"], error["data"]["code"]) == ("error", f"u/{cmd.sender_id}", code)
        assert error["data"]["callId"] == cmd.call_id and error["data"]["message"]
    assert await credits(ledger, caller) == 93


async def test_starting_the_same_call_twice_is_one_call(ledger):
    caller, callee, call_id, _ = await start_call(ledger, 100)
    again = await apply(ledger, meter("start", call_id, callee, T0 + 1000, caller_id=caller, callee_id=callee))
    assert [(e["event"], e["room"]) for e in again.emits] == [("callStarted", f"u/{callee}")]
    assert await credits(ledger, caller) == 93


async def test_a_caller_with_an_unpaid_refund_shortfall_cannot_start_a_paid_call(ledger):
    caller, callee, call_id = uid("caller"), uid("callee"), uid("call")
    account = ledger_repo.user_account(caller)
    await grants.grant(ledger, account, 5, "test", "k")
    purchase = uid("cs")
    await ledger.execute(
        "INSERT INTO purchases (purchase_ref, provider, payment_ref, user_id, pack, credits, amount, currency)"
        " VALUES ($1, 'stripe', $1, $2, 'pack_10', 10, 500, 'usd')",
        purchase,
        caller,
    )
    await ledger.execute(
        "INSERT INTO receivables (account_id, purchase_ref, reversal, amount) VALUES ($1, $2, 10, 8)", account, purchase
    )
    outcome = await apply(ledger, meter("start", call_id, caller, T0, caller_id=caller, callee_id=callee))
    assert outcome.emits[0]["event"] == "callEnded"
    assert outcome.emits[0]["data"]["reason"] == "spending_blocked"
    assert await movements(ledger, call_id) == []
    assert await credits(ledger, caller) == 0  # the 5 credits went to the debt first; 3 still owed
