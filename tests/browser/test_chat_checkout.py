"""The chat page's "Buy credits" in Chromium, end to end: real ingress nodes calling the local fake
Stripe API with the real ``stripe`` library, then the signed ``checkout.session.completed`` webhook
granting the pack through the billing worker, which the page hears as ``creditsPurchased``.

Stripe's hosted checkout page is the one thing not run: the browser's navigation to the URL the
fake returned is answered by a Playwright route handler, so no request leaves the machine.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Route, expect

from tests.support.admin_api import grant, stats
from tests.support.fake_stripe import FakeStripe
from tests.support.ids import uid
from tests.support.pages import sign_in
from tests.support.stripe_signing import body_of, stripe_signature
from tests.support.web_stack import WebStack, WebStackOptions

STRIPE_WEBHOOK_SECRET = "whsec_test_" + secrets.token_hex(12)
PACKS = "pack_10:10:500:usd,pack_50:50:2000:usd,pack_200:200:6000:usd"
CHECKOUT_PAGES = "https://checkout.stripe.com/**"


@pytest.fixture(scope="module")
async def fake_stripe() -> AsyncIterator[FakeStripe]:
    fake = FakeStripe()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(scope="module")
def web_stack_options(fake_stripe: FakeStripe) -> WebStackOptions:
    return WebStackOptions(
        queues="chat billing",
        env={
            "STRIPE_SECRET_KEY": fake_stripe.api_key,
            "STRIPE_API_BASE": fake_stripe.url,
            "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            "CREDIT_PACKS": PACKS,
        },
    )


async def test_buy_credits_goes_to_stripe_checkout_and_the_paid_pack_shows_in_the_balance(
    web_stack: WebStack, fake_stripe: FakeStripe, http, new_page, screenshot
):
    buyer = uid("buyer")
    await grant(http, web_stack, buyer, 3, "web-checkout-g1")
    page = await new_page()
    checkout_requests: list[str] = []

    async def stripe_checkout_page(route: Route) -> None:
        checkout_requests.append(route.request.url)
        await route.fulfill(
            status=200,
            content_type="text/html",
            body="<!doctype html><title>Stripe Checkout (test)</title><h1>Pay for your credits</h1>",
        )

    await page.route(CHECKOUT_PAGES, stripe_checkout_page)
    chat_url = web_stack.url("/", node=0)
    await sign_in(page, chat_url, buyer, "Buyer")
    await expect(page.get_by_test_id("credits")).to_have_text("3")

    await page.locator("#balance").get_by_role("button", name="Buy credits").click()
    dialog = page.locator("#buy-dialog")
    await expect(dialog.locator("#packs li")).to_have_count(3)
    await dialog.get_by_role("radio", name=re.compile(r"^50 credits")).check()
    await screenshot(page, "chat-buy-credits-dialog")
    await dialog.get_by_role("button", name="Go to checkout").click()

    # The browser is sent to the very session URL the fake Stripe created.
    await expect(page).to_have_url(re.compile(r"^https://checkout\.stripe\.com/c/pay/cs_test_"))
    await expect(page.get_by_role("heading", name="Pay for your credits")).to_be_visible()
    created = [r for r in fake_stripe.requests if (r.method, r.path) == ("POST", "/v1/checkout/sessions")]
    assert len(created) == 1, created
    assert created[0].status == 200
    assert created[0].params["metadata"] == {"user_id": buyer, "pack": "pack_50", "credits": "50"}
    assert created[0].params["client_reference_id"] == buyer
    [session] = fake_stripe.sessions.values()
    assert (session["amount_total"], session["currency"]) == (2000, "usd")
    assert page.url == session["url"]
    assert checkout_requests == [session["url"]]
    await screenshot(page, "chat-stripe-checkout")

    # Back on the chat page (still signed in), Stripe reports the payment: the balance goes up live.
    await page.goto(chat_url)
    await expect(page.locator("#connection")).to_have_text("connected")
    await expect(page.get_by_test_id("credits")).to_have_text("3")
    completed = fake_stripe.completed_event(session["id"])
    body = body_of(completed)
    headers = {"content-type": "application/json", "Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET)}
    async with http.post(web_stack.url("/webhooks/stripe", node=1), data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"received": True, "duplicate": False}
    await expect(page.get_by_test_id("composer-notices")).to_contain_text("50 credits added")
    await expect(page.get_by_test_id("credits")).to_have_text("53")
    await screenshot(page, "chat-credits-purchased")
    assert (await stats(http, web_stack, buyer))["credits"] == 53
