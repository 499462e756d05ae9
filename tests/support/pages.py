"""The web pages driven through Playwright: signing in, joining a room, a message in the list, and
full-page screenshots."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Page, expect

from tests.support.processes import ROOT

SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
TOKEN_KEY = "gatekeeper.token"  # ingress/web/js/shared/session.js keeps the JWT under this key


async def sign_in(page: Page, url: str, user_id: str, name: str) -> None:
    """Through the page's own form: mint a dev token."""
    await page.goto(url)
    await page.get_by_label("User id", exact=True).fill(user_id)
    await page.get_by_label("Display name", exact=True).fill(name)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who")).to_have_text(f"{name} ({user_id})")
    await expect(page.locator("#connection")).to_have_text("connected")


async def sign_in_with_token(page: Page, url: str, token: str) -> None:
    """Open ``url`` already signed in: the token goes where the pages keep it, then the page loads."""
    await page.goto(url)
    await page.evaluate("([key, token]) => sessionStorage.setItem(key, token)", [TOKEN_KEY, token])
    await page.reload()


async def join(page: Page, room: str) -> None:
    await page.get_by_label("Room", exact=True).fill(room)
    await page.get_by_role("button", name="Join").click()
    await expect(page.locator("#room-title")).to_have_text(f"Room {room}")
    await expect(page.locator("#message")).to_be_enabled()


def message(page: Page, text: str):
    """The chat page's list items holding ``text``."""
    return page.locator("#messages li.msg", has_text=text)


async def take_screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as ``tests/artifacts/screenshots/<name>.png`` (kept as a CI artifact)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
