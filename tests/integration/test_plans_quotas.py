"""Daily quotas against the real PostgreSQL: the chat charge path and the AI pre-call check."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from domain.credits import CreditPolicy
from domain.plans import PlanCatalog
from infra import grants
from infra import ledger as ledger_repo
from schemas.commands import SendChatMessage, send_command_ids
from tests.support.stripe_objects import PLANS_JSON, event, subscription
from workers import chat_service, plans_service, quotas

POLICY = CreditPolicy(1000, 50, 86_400)
CATALOG = PlanCatalog.parse(PLANS_JSON)  # free: 2 messages/day and 10 AI tokens; starter: 3 and 1000


def command(user: str, text: str, at_ms: int | None = None) -> SendChatMessage:
    command_id, message_id = send_command_ids(user, None)
    return SendChatMessage(
        command_id=command_id,
        message_id=message_id,
        user_id=user,
        username=user,
        room_id="room-q",
        message=text,
        client_message_id=None,
        accepted_at_ms=at_ms or int(time.time() * 1000),
    )


async def send(pool, cmd):
    return await chat_service.send_message(pool, cmd, POLICY, 0, "/billing", None, CATALOG)


async def funded_user(pool, credits: int = 5) -> str:
    user = f"q-{uuid.uuid4().hex[:8]}"
    await grants.grant(pool, ledger_repo.user_account(user), credits, "test", "k", 0)
    return user


async def test_free_plan_blocks_the_third_message_and_charges_nothing(ledger):
    user = await funded_user(ledger)
    first, second = await send(ledger, command(user, "hola")), await send(ledger, command(user, "hola"))
    assert first.status == second.status == "applied"
    before = await ledger.fetchrow(
        "SELECT credits, words_used_total FROM accounts WHERE account_id = $1", f"user:{user}"
    )
    blocked_cmd = command(user, "palabra " * 1500)
    blocked = await send(ledger, blocked_cmd)
    assert blocked.status == "rejected"
    [(name, channel, data)] = [(e["event"], e["room"], e["data"]) for e in blocked.emits]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert (name, channel) == ("quotaExceeded", f"u/{user}")
    assert (data["kind"], data["limit"], data["used"], data["plan"]) == ("messages", 2, 2, "free")
    assert data["resetsAt"] == f"{tomorrow}T00:00:00Z" and data["messageId"] == blocked_cmd.message_id
    after = await ledger.fetchrow(
        "SELECT credits, words_used_total FROM accounts WHERE account_id = $1", f"user:{user}"
    )
    assert after == before
    assert not await ledger.fetchval(
        "SELECT count(*) FROM messages WHERE message_id = $1", uuid.UUID(blocked_cmd.message_id)
    )
    assert (await send(ledger, blocked_cmd)).fresh is False  # a redelivery replays the block


async def test_the_quota_resets_at_utc_midnight(ledger):
    user = await funded_user(ledger)
    yesterday = int((time.time() - 86_400) * 1000)
    for _ in range(2):
        assert (await send(ledger, command(user, "hola", yesterday))).status == "applied"
    assert (await send(ledger, command(user, "hola", yesterday))).status == "rejected"
    assert (await send(ledger, command(user, "hola"))).status == "applied"


async def test_a_credit_blocked_message_does_not_use_the_quota(ledger):
    user = await funded_user(ledger, credits=1)
    assert (await send(ledger, command(user, "palabra " * 2000))).emits[0]["event"] == "creditError"
    assert (await send(ledger, command(user, "hola"))).status == "applied"
    assert (await send(ledger, command(user, "hola"))).status == "applied"


async def test_concurrent_sends_never_exceed_the_quota(ledger):
    user = await funded_user(ledger)
    outcomes = await asyncio.gather(*(send(ledger, command(user, "hola")) for _ in range(10)))
    assert sum(o.status == "applied" for o in outcomes) == 2
    assert await ledger.fetchval("SELECT messages FROM daily_usage WHERE user_id = $1", user) == 2


async def test_a_paid_plan_raises_the_quota(ledger):
    user = await funded_user(ledger)
    h = uuid.uuid4().hex[:8]
    sub = subscription(f"sub_{h}", f"cus_{h}", "price_starter", user_id=user)
    await plans_service.apply_event(ledger, event("customer.subscription.created", sub, int(time.time())), CATALOG)
    statuses = [(await send(ledger, command(user, "hola"))).status for _ in range(4)]
    assert statuses == ["applied", "applied", "applied", "rejected"]


async def test_ai_tokens_quota_counts_todays_calls_only(ledger):
    user = f"q-{uuid.uuid4().hex[:8]}"
    account = ledger_repo.user_account(user)
    assert await quotas.ai_token_block(ledger, CATALOG, user, time.time()) is None
    insert = (
        "INSERT INTO ai_usage (call_id, command_id, purpose, asker, model, prompt_tokens, completion_tokens,"
        " latency_ms, status, created_at) VALUES ($1, 'c', 'reply', $2, 'm', $3, $4, 1, 'ok', $5)"
    )
    await ledger.execute(insert, uuid.uuid4(), account, 50, 50, datetime.now(UTC) - timedelta(days=1))
    assert await quotas.ai_token_block(ledger, CATALOG, user, time.time()) is None
    await ledger.execute(insert, uuid.uuid4(), account, 6, 4, datetime.now(UTC))
    block = await quotas.ai_token_block(ledger, CATALOG, user, time.time())
    assert block is not None and (block.kind, block.limit, block.used, block.plan) == ("ai_tokens", 10, 10, "free")
