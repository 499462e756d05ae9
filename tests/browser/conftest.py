"""Browser tests: Playwright (async API) driving Debian's Chromium against the real stack.

Fixtures for every page's tests:

- ``browser``: one headless ``/usr/bin/chromium`` per session (never ``playwright install``).
- ``new_page``: ``await new_page()`` opens a page in a fresh context (its own sessionStorage, so
  one user per page); uncaught page errors fail the test.
- ``screenshot``: ``tests.support.pages.take_screenshot(page, name)``, a PNG under
  ``tests/artifacts/screenshots/``.
- ``web_stack``: two ingress nodes with ``ALLOW_DEV_TOKENS=1`` and a worker pool, one per test
  module. Override ``web_stack_options`` in a module (or start your own with
  ``tests.support.web_stack.start_web_stack``) for extra env or queues, e.g.::

      @pytest.fixture(scope="module")
      def web_stack_options(fake_provider_env):
          return WebStackOptions(queues="chat outbound", env=fake_provider_env)

Helpers live in tests/support: ``web_stack`` (``WebStack``, ``WebStackOptions``, ``dev_token``) and
``pages`` (``sign_in``, ``join``, ``message``, and ``sign_in_with_token``, which with ``dev_token``
skips the sign-in form when a test is about something else).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.support.pages import take_screenshot
from tests.support.web_stack import WebStack, WebStackOptions, start_web_stack

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

expect.set_options(timeout=20_000)  # generous: the stack runs on a small shared machine


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)


# --- the stack -------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_stack_options() -> WebStackOptions:
    return WebStackOptions()


@pytest.fixture(scope="module")
def web_stack(stack_env: dict[str, str], web_stack_options: WebStackOptions) -> Iterator[WebStack]:
    stack = start_web_stack(stack_env, web_stack_options)
    try:
        yield stack
    finally:
        stack.processes.stop_all()


@pytest.fixture(autouse=True)
def _ledger_invariants_after_each_test(ledger):
    """Every browser test ends with the ledger invariants checked, like the end-to-end tests."""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# --- the browser -----------------------------------------------------------------


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (scripts/bootstrap.sh --dev)")
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield chromium
        await chromium.close()


NewPage = Callable[..., Awaitable[Page]]


@pytest.fixture
async def new_page(browser: Browser) -> AsyncIterator[NewPage]:
    """``await new_page()``: a page in its own context (one user each); closed when the test ends."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    async def make(**context_options) -> Page:
        context = await browser.new_context(viewport={"width": 1200, "height": 800}, **context_options)
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        return page

    yield make
    for context in contexts:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def screenshot() -> Callable[[Page, str], Awaitable[Path]]:
    return take_screenshot
