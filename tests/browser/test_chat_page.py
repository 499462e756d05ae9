"""The chat page in Chromium against the real stack: two ingress nodes, chat workers, RabbitMQ,
Redis and PostgreSQL. Each user has their own browser context, signed in with a dev token."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import expect

from tests.support.admin_api import grant, stats
from tests.support.clients import ChatClient
from tests.support.ids import uid
from tests.support.pages import join, message, sign_in
from tests.support.web_stack import WebStack, WebStackOptions

MISSED = 230  # messages sent while a page is away: more than roomJoined's first page (HISTORY_PAGE_MAX)


@pytest.fixture(scope="module")
def web_stack_options() -> WebStackOptions:
    return WebStackOptions(queues="chat billing")  # billing: tips


async def test_two_browsers_talk_and_the_balance_goes_down(web_stack: WebStack, http, new_page, screenshot):
    alice_id, bob_id, room = uid("alice"), uid("bob"), uid("room")
    await grant(http, web_stack, alice_id, 2, "web-g1")
    alice, bob = await new_page(), await new_page()
    await sign_in(alice, web_stack.url("/", node=0), alice_id, "Alice")
    await sign_in(bob, web_stack.url("/", node=1), bob_id, "Bob")  # the other node: Redis fans out
    await expect(alice.get_by_test_id("credits")).to_have_text("2")
    await expect(alice.get_by_test_id("words-left")).to_have_text("0")
    await expect(bob.get_by_test_id("credits")).to_have_text("0")  # no account yet: a plain 0

    await join(alice, room)
    await join(bob, room)
    await expect(alice.locator("#messages")).to_contain_text("Bob joined")

    # Typing shows on the other side, and stops.
    await bob.locator("#message").press_sequentially("Hol")
    await expect(alice.locator("#typing")).to_have_text("Bob is typing…")
    await bob.locator("#message").fill("")

    text = "Hola mundo, esto es una prueba <b>negrita</b>"  # 9 words (b, negrita, b): 1 credit opens 1000 words
    await alice.locator("#message").fill(text)
    await alice.locator("#message").press("Enter")
    received = message(bob, "Hola mundo")
    await expect(received).to_have_count(1)
    await expect(received.locator(".msg-text")).to_have_text("Hola mundo, esto es una prueba negrita")
    await expect(received.locator(".msg-author")).to_have_text("Alice")
    sent = message(alice, "Hola mundo")
    await expect(sent).to_have_class("msg kind-user own")
    await expect(sent.locator(".msg-status")).to_have_text("delivered · 1 credit · 991 words left")
    await expect(alice.get_by_test_id("credits")).to_have_text("1")
    await expect(alice.get_by_test_id("words-left")).to_have_text("991")
    balance = await stats(http, web_stack, alice_id)
    assert (balance["credits"], balance["wordsLeft"], balance["creditsChargedTotal"]) == (1, 991, 1)

    # Bob's page saw the message, so it marks it read; Alice sees who read it.
    await expect(sent.locator(".msg-read")).to_have_text("read by Bob")
    await expect(alice.locator("#typing")).to_have_text("")
    await screenshot(alice, "chat-two-browsers-alice")
    await screenshot(bob, "chat-two-browsers-bob")

    # A second message inside the open 1000 words charges no credit, only words.
    await alice.locator("#message").fill("tres palabras más")
    await alice.locator("#send").click()
    await expect(message(bob, "tres palabras más")).to_have_count(1)
    await expect(alice.get_by_test_id("words-left")).to_have_text("988")
    await expect(alice.get_by_test_id("credits")).to_have_text("1")


async def test_a_blocked_message_shows_the_credit_error_and_reaches_no_one(
    web_stack: WebStack, http, new_page, screenshot
):
    carol_id, dave_id, room = uid("carol"), uid("dave"), uid("room")
    await grant(http, web_stack, dave_id, 1, "web-g1")
    carol, dave = await new_page(), await new_page()
    await sign_in(carol, web_stack.url("/", node=0), carol_id, "Carol")
    await sign_in(dave, web_stack.url("/", node=1), dave_id, "Dave")
    await join(carol, room)
    await join(dave, room)
    await expect(carol.get_by_test_id("credits")).to_have_text("0")

    # 60 words with no credit: more than the 50 grace words, so the worker blocks it.
    text = " ".join(f"palabra{i}" for i in range(60))
    await carol.locator("#message").fill(text)
    await carol.locator("#message").press("Enter")
    notices = carol.get_by_test_id("composer-notices")
    await expect(notices).to_contain_text("Insufficient credits")
    await expect(notices).to_contain_text("needs 1 credit(s)")
    await expect(notices.get_by_role("button", name="Buy credits")).to_be_visible()
    await expect(message(carol, "palabra0").locator(".msg-status")).to_have_text("not sent: not enough credits")
    await screenshot(carol, "chat-credit-error")

    # The worker has decided (the error came from it): Dave never gets the message. His next
    # message, which went through the same pipeline after it, shows the room is live.
    await dave.locator("#message").fill("sigo aquí")
    await dave.locator("#message").press("Enter")
    await expect(message(carol, "sigo aquí")).to_have_count(1)
    await expect(dave.locator("#messages")).not_to_contain_text("palabra0")
    await screenshot(dave, "chat-credit-error-other-browser")
    assert (await stats(http, web_stack, carol_id))["creditsChargedTotal"] == 0

    # "Buy credits" lists the packs; without Stripe configured the checkout says so plainly.
    await notices.get_by_role("button", name="Buy credits").click()
    dialog = carol.locator("#buy-dialog")
    await expect(dialog.locator("#packs li")).to_have_count(3)
    await dialog.get_by_role("button", name="Go to checkout").click()
    await expect(dialog.locator("#buy-notices")).to_contain_text("payments are not configured")


async def test_a_tip_from_the_member_list(web_stack: WebStack, http, new_page, screenshot):
    erin_id, fay_id, room = uid("erin"), uid("fay"), uid("room")
    await grant(http, web_stack, erin_id, 5, "web-g1")
    await grant(http, web_stack, fay_id, 1, "web-g1")  # a tip needs the recipient's account
    erin, fay = await new_page(), await new_page()
    await sign_in(erin, web_stack.url("/", node=0), erin_id, "Erin")
    await sign_in(fay, web_stack.url("/", node=1), fay_id, "Fay")
    await join(erin, room)
    await join(fay, room)
    await expect(erin.locator("#members")).to_contain_text("Fay")  # seen joining

    await erin.locator("#members").get_by_role("button", name="Fay").click()
    dialog = erin.locator("#tip-dialog")
    await expect(dialog.get_by_label("To user id")).to_have_value(fay_id)
    await dialog.get_by_label("Credits").fill("2")
    await screenshot(erin, "chat-tip-dialog")
    await dialog.get_by_role("button", name="Send tip").click()
    await expect(dialog).to_be_hidden()
    await expect(erin.get_by_test_id("composer-notices")).to_contain_text(f"You tipped {fay_id} 2 credit(s).")
    await expect(fay.get_by_test_id("composer-notices")).to_contain_text("Erin tipped you 2 credit(s).")
    await expect(erin.get_by_test_id("credits")).to_have_text("3")
    await expect(fay.get_by_test_id("credits")).to_have_text("3")
    for page in (erin, fay):
        await expect(page.locator("#messages li.msg.kind-tip")).to_have_text(
            re.compile(f"Erin tipped {fay_id} 2 credits")
        )

    # Refused at once by ingress (more than the sender could ever tip): the reason is in the dialog.
    await erin.get_by_role("button", name="Tip…").click()
    await dialog.get_by_label("To user id").fill(erin_id)
    await dialog.get_by_role("button", name="Send tip").click()
    await expect(dialog.locator("#tip-notices")).to_have_text(re.compile("You cannot tip yourself"))
    await dialog.get_by_label("To user id").fill(fay_id)
    await dialog.get_by_label("Credits").fill("50")
    await dialog.get_by_role("button", name="Send tip").click()
    await expect(dialog).to_be_hidden()
    await expect(erin.get_by_test_id("composer-notices")).to_contain_text("the tip needs 50 credit(s)")
    await screenshot(erin, "chat-tip-refused")
    assert (await stats(http, web_stack, erin_id))["credits"] == 3


async def test_a_page_whose_node_goes_away_reconnects_and_resyncs(web_stack: WebStack, http, new_page, screenshot):
    """Node 1 is stopped (SIGTERM: drained) and started again on its port; Bob's page, served by
    it, reconnects by itself, re-joins and merges the history: what he missed, nothing twice."""
    alice_id, bob_id, room = uid("alice"), uid("bob"), uid("room")
    await grant(http, web_stack, alice_id, 3, "web-g1")
    alice, bob = await new_page(), await new_page()
    await sign_in(alice, web_stack.url("/", node=0), alice_id, "Alice")
    await sign_in(bob, web_stack.url("/", node=1), bob_id, "Bob")
    await join(alice, room)
    await join(bob, room)
    await alice.locator("#message").fill("antes del corte")
    await alice.locator("#message").press("Enter")
    await expect(message(bob, "antes del corte")).to_have_count(1)

    port = web_stack.ports[1]
    web_stack.nodes[1].terminate()
    await expect(bob.locator("#connection")).to_have_text("reconnecting…")
    await expect(bob.locator("#page-notices")).to_contain_text("restarting")
    await expect(bob.locator("#message")).to_be_disabled()
    await screenshot(bob, "chat-reconnecting")

    await alice.locator("#message").fill("mientras no estabas")
    await alice.locator("#message").press("Enter")
    await expect(message(alice, "mientras no estabas").locator(".msg-status")).to_contain_text("delivered")

    web_stack.nodes[1] = web_stack.processes.ingress(port)
    await expect(bob.locator("#connection")).to_have_text("connected", timeout=60_000)
    await expect(message(bob, "mientras no estabas")).to_have_count(1)
    await expect(message(bob, "antes del corte")).to_have_count(1)
    await expect(bob.locator("#message")).to_be_enabled()
    await expect(bob.locator("#page-notices")).not_to_contain_text("restarting")  # over once back
    await screenshot(bob, "chat-resynced")

    # Live again on the new node.
    await bob.locator("#message").fill("ya volví")
    await bob.locator("#message").press("Enter")
    await expect(message(alice, "ya volví")).to_have_count(1)


async def test_a_page_back_from_a_long_outage_catches_up_on_more_than_a_page(
    web_stack: WebStack, http, new_page, screenshot
):
    """While Bob's node is away, 230 messages are sent: more than a join's first page (200). Back,
    his page re-joins with the last seq it had and fetches the rest over HTTP: all, once each."""
    bob_id, room = uid("bob"), uid("room")
    senders = [ChatClient(uid(f"s{i}")) for i in range(3)]
    bob = await new_page()
    await sign_in(bob, web_stack.url("/", node=1), bob_id, "Bob")
    await join(bob, room)
    try:
        for sender in senders:
            await grant(http, web_stack, sender.user_id, 5, "web-g1")
            await sender.connect(web_stack.ports[0])
            await sender.join(room)
        await senders[0].send(room, "antes del corte")
        await expect(message(bob, "antes del corte")).to_have_count(1)

        port = web_stack.ports[1]
        web_stack.nodes[1].terminate()
        await expect(bob.locator("#connection")).to_have_text("reconnecting…")
        acks = await asyncio.gather(*(senders[n % 3].send(room, f"perdido numero {n}") for n in range(MISSED)))
        assert [a["status"] for a in acks] == ["accepted"] * MISSED
        await senders[0].wait_count("newMessage", MISSED + 1)

        web_stack.nodes[1] = web_stack.processes.ingress(port)
        await expect(bob.locator("#connection")).to_have_text("connected", timeout=60_000)
        await expect(bob.locator("#messages li.msg")).to_have_count(MISSED + 1, timeout=30_000)
        for n in (0, 199, 200, MISSED - 1):  # both sides of the first page's end, and the last
            await expect(message(bob, f"perdido numero {n}")).to_have_count(1)
        await screenshot(bob, "chat-caught-up")
    finally:
        for sender in senders:
            await sender.close()
