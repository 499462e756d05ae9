"""The chat page and the AI agent: a mention's answer streams into the page as it is written."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect

from tests.support.admin_api import grant
from tests.support.fake_openai import FakeOpenAI
from tests.support.ids import uid
from tests.support.pages import join, message, sign_in
from tests.support.web_stack import WebStack, WebStackOptions

API_KEY = "sk-test-" + uuid.uuid4().hex
REPLY = "Atendemos de lunes a viernes, de nueve a seis, y los sábados por la mañana."


@pytest.fixture(scope="module")
async def fake_model() -> AsyncIterator[FakeOpenAI]:
    # Slow pieces, and every piece sent on its own: the page is seen mid-stream.
    fake = FakeOpenAI(api_key=API_KEY, reply_text=REPLY, chunks=6, chunk_delay_s=0.6)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture(scope="module")
def web_stack_options(fake_model: FakeOpenAI) -> WebStackOptions:
    return WebStackOptions(
        queues="chat ai",
        nodes=1,
        env={
            "OPENAI_BASE_URL": fake_model.url,
            "OPENAI_API_KEY": API_KEY,
            "AI_MODEL": "fake-model",
            "AI_DELTA_INTERVAL_MS": "0",
            "AI_TIMEOUT_S": "20",
        },
    )


async def test_an_agent_reply_streams_into_the_page(web_stack: WebStack, http, new_page, screenshot):
    user_id, room = uid("asker"), uid("room")
    await grant(http, web_stack, user_id, 2, "web-ai")
    page = await new_page()
    await sign_in(page, web_stack.url("/"), user_id, "Asker")
    await join(page, room)
    await page.locator("#message").fill("@AgenteIA ¿cuál es el horario?")
    await page.locator("#message").press("Enter")

    bubble = page.locator("#messages li.msg.kind-ai")
    await expect(bubble).to_have_class(re.compile(r"\bstreaming\b"))  # pieces are arriving
    await expect(bubble.locator(".msg-text")).to_contain_text("Atendemos")
    await screenshot(page, "chat-ai-streaming")
    await expect(bubble).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=60_000)  # the final newMessage
    await expect(bubble).to_have_count(1)
    await expect(bubble.locator(".msg-text")).to_have_text(REPLY)
    await expect(bubble.locator(".msg-author")).to_have_text("AgenteIA")
    await expect(message(page, "¿cuál es el horario?")).to_have_count(1)
    # The question (4 words) and the reply's words both come out of the 1000 words one credit opened.
    await expect(page.get_by_test_id("credits")).to_have_text("1")
    await screenshot(page, "chat-ai-final")
