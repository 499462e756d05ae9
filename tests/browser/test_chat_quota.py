"""A plan's daily quota on the chat page: the notice names the limit and when it resets."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect

from tests.support.admin_api import grant, stats
from tests.support.ids import uid
from tests.support.pages import join, message, sign_in
from tests.support.web_stack import WebStack, WebStackOptions


@pytest.fixture(scope="module")
def web_stack_options() -> WebStackOptions:
    return WebStackOptions(nodes=1, env={"PLANS": json.dumps({"free": {"daily_messages": 1}})})


async def test_a_message_over_the_daily_quota_names_the_limit_and_the_reset(
    web_stack: WebStack, http, new_page, screenshot
):
    user_id, room = uid("quota"), uid("room")
    await grant(http, web_stack, user_id, 2, "web-q")
    page = await new_page(timezone_id="America/Mexico_City", locale="en-US")
    await sign_in(page, web_stack.url("/"), user_id, "Quinn")
    await join(page, room)
    await page.locator("#message").fill("el primero pasa")
    await page.locator("#message").press("Enter")
    await expect(message(page, "el primero pasa").locator(".msg-status")).to_contain_text("delivered")

    await page.locator("#message").fill("el segundo no")
    await page.locator("#message").press("Enter")
    notices = page.get_by_test_id("composer-notices")
    await expect(notices).to_contain_text(
        "Daily limit reached: your free plan allows 1 messages a day and you have used 1."
    )
    # Quotas reset at 00:00 UTC; the page says when that is in the user's own time zone.
    reset = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    local = reset.astimezone(ZoneInfo("America/Mexico_City"))  # UTC-6 all year: 18:00 the day before
    await expect(notices).to_contain_text(re.compile(rf"It resets at .*{local.strftime('%b')} {local.day}, .*6:00"))
    await expect(message(page, "el segundo no").locator(".msg-status")).to_have_text("not sent: daily quota reached")
    await screenshot(page, "chat-quota-exceeded")
    assert (await stats(http, web_stack, user_id))["wordsUsedTotal"] == 3
