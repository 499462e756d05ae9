"""The admin console in a real browser: an admin requeues a real dead letter, and it is applied once.

The fault is real: PostgreSQL refuses the room's messages, so the chat worker retries the command
and dead-letters it. The admin signs in with a dev token, sees the queues and the dead letter,
reads its traceback, and requeues it once the fault is fixed. The command is then applied exactly
once (inbox, stored message, one charge). The admin also grants credits, reads the ledger
history, creates a tenant and sees the charts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid

from playwright.async_api import expect

from schemas.queues import CHAT_QUEUE, SEND_MESSAGE_ACTOR
from tests.support.dead_letters import DlqStack, Fault, send, wait_listed
from tests.support.isolation import ADMIN_TOKEN
from tests.support.web_stack import WebStack

ADMIN = {"x-admin-token": ADMIN_TOKEN}


async def test_an_admin_requeues_a_dead_letter_and_it_is_applied_once(
    web_stack: WebStack, iso, pool, http, new_page, screenshot
):
    started = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    user, room = f"dead-{uuid.uuid4().hex[:8]}", f"room-{uuid.uuid4().hex[:8]}"
    async with http.post(
        web_stack.url(f"/api/credits/grant/{user}"),
        json={"credits": 5, "reason": "test", "idempotencyKey": "admin-console"},
        headers=ADMIN,
    ) as resp:
        assert resp.status == 201, await resp.text()
    fault = Fault(pool, room)
    await fault.start()
    try:
        assert web_stack.workers is not None
        command = send(user, room, words=10)
        message_id = await DlqStack(iso, pool, web_stack.workers).publish(SEND_MESSAGE_ACTOR, command)
        await wait_listed(http, web_stack, ADMIN, {message_id})

        # The admin signs in with a dev token.
        page = await new_page()
        await page.goto(web_stack.url("/console"))
        await page.locator("#dev-user-id").fill(f"admin-{uuid.uuid4().hex[:6]}")
        await page.locator("#dev-role").select_option("admin")
        await page.locator("#dev-form button[type=submit]").click()
        await expect(page.get_by_test_id("who")).to_contain_text("admin")

        # Queues at a glance: one row per queue; the chat queue's dead letter is highlighted.
        queues = page.locator("#admin-queues")
        await expect(queues.locator("tbody tr")).to_have_count(5)
        chat_row = queues.locator(f"tr[data-queue='{CHAT_QUEUE}']")
        await expect(chat_row).to_have_class(re.compile(r"\bhas-dead\b"), timeout=60_000)
        await expect(chat_row.locator("td[data-col=dead]")).not_to_have_text("0")

        # The dead letter, filtered to this test's, with its traceback.
        dead = page.locator("#admin-dead")
        await dead.locator("input[name=actor]").fill(SEND_MESSAGE_ACTOR)
        await dead.locator("input[name=since]").fill(started.isoformat())
        await dead.get_by_role("button", name="Refresh list").click()
        row = dead.locator(f"tr[data-message-id='{message_id}']")
        await expect(row).to_be_visible()
        await expect(dead.locator("tbody tr")).to_have_count(1)
        await expect(row).to_contain_text(command["command_id"])
        await expect(row).to_contain_text("test fault")
        await row.locator("summary").click()
        await expect(row.locator("pre.traceback")).to_contain_text("Traceback")
        await screenshot(page, "admin-console-dead-letter")

        # Fixed: requeue it (with confirmation); the list empties.
        await fault.fix()
        await row.get_by_role("checkbox").check()
        await dead.get_by_role("button", name="Requeue selected (1)").click()
        await expect(dead.locator(".admin-confirm")).to_contain_text("Requeue 1 dead message")
        await dead.get_by_role("button", name="Yes, requeue").click()
        await expect(dead.locator(".notice-info")).to_contain_text("Requeued 1 message.")
        await expect(dead.locator("tbody tr")).to_have_count(0)
        await expect(dead.locator(".admin-summary")).to_have_text("No dead messages match.")

        # Applied exactly once.
        deadline = time.monotonic() + 60
        while await pool.fetchval("SELECT status FROM inbox WHERE command_id = $1", command["command_id"]) != "applied":
            assert time.monotonic() < deadline, "the requeued command was not applied"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # a duplicate would have arrived by now
        assert await pool.fetchval("SELECT count(*) FROM messages WHERE room_id = $1", room) == 1
        charges = await pool.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'charge' AND reference = $1", command["command_id"]
        )
        assert charges == 1
        await screenshot(page, "admin-console-requeued")

        # Credits: the user's balance and ledger, and a grant.
        credits = page.locator("#admin-credits")
        await credits.locator("input[name=userId]").fill(user)
        await credits.get_by_role("button", name="Look up").click()
        async with http.get(web_stack.url(f"/api/credits/stats/{user}"), headers=ADMIN) as resp:
            balance = (await resp.json())["credits"]
        async with http.get(web_stack.url(f"/api/credits/history/{user}"), headers=ADMIN) as resp:
            entries = (await resp.json())["entries"]
        assert [e["kind"] for e in entries][:2] == ["charge", "grant"]
        await expect(credits.locator("dd[data-field=Credits]")).to_have_text(str(balance))
        await expect(credits.locator(".history-table tbody tr")).to_have_count(len(entries))
        await expect(credits.locator(".history-table tbody tr").first).to_contain_text("charge")
        await credits.locator("input[name=credits]").fill("3")
        await credits.locator("input[name=reason]").fill("goodwill")
        await credits.get_by_role("button", name="Grant credits").click()
        notice = f"Granted 3 credits to {user}. Balance: {balance + 3}."
        await expect(credits.locator(".notice-info")).to_contain_text(notice)
        await expect(credits.locator("dd[data-field=Credits]")).to_have_text(str(balance + 3))
        await expect(credits.locator(".history-table tbody tr").first).to_contain_text("goodwill")

        # Tenants: create one; it is listed.
        tenant = f"t-{uuid.uuid4().hex[:6]}"
        tenants = page.locator("#admin-tenants")
        await tenants.locator("input[name=tenantId]").fill(tenant)
        await tenants.locator("input[name=name]").fill("Acme Test")
        await tenants.get_by_role("button", name="Create tenant").click()
        await expect(tenants.locator(f"tr[data-tenant='{tenant}']")).to_contain_text("Acme Test")

        # Charts: three, each over the last hour by minute.
        charts = page.locator("#admin-charts svg.chart")
        await expect(charts).to_have_count(3)
        for metric in ("messages", "credits", "ai_tokens"):
            await expect(page.locator(f"figure[data-metric={metric}] svg")).to_have_attribute("data-points", "60")
        await screenshot(page, "admin-console")
    finally:
        await fault.fix()
