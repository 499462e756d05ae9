"""Browser tests: Playwright (async API) driving Debian's Chromium against the real stack.

Fixtures for every page's tests:

- ``browser``: one headless ``/usr/bin/chromium`` per session (never ``playwright install``).
- ``new_page``: ``await new_page()`` opens a page in a fresh context (its own sessionStorage, so
  one user per page); uncaught page errors fail the test.
- ``screenshot`` / ``take_screenshot(page, name)``: a PNG under ``tests/artifacts/screenshots/``.
- ``web_stack``: two ingress nodes with ``ALLOW_DEV_TOKENS=1`` and a worker pool, one per test
  module. Override ``web_stack_options`` in a module (or start your own with
  ``start_web_stack``) for extra env or queues, e.g.::

      @pytest.fixture(scope="module")
      def web_stack_options(fake_provider_env):
          return WebStackOptions(queues="chat outbound", env=fake_provider_env)

- ``dev_token(http, stack, user_id, ...)`` and ``sign_in_with_token(page, url, token)`` skip the
  sign-in form when a test is about something else.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.support import isolation
from tests.support.processes import ROOT, Proc, Processes

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"
TOKEN_KEY = "gatekeeper.token"  # ingress/web/js/shared/session.js keeps the JWT under this key

expect.set_options(timeout=20_000)  # generous: the stack runs on a small shared machine


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)


# --- the stack -------------------------------------------------------------------


@dataclass
class WebStackOptions:
    queues: str = "chat"  # worker queues, space-separated, e.g. "chat billing outbound"
    env: dict[str, str] = field(default_factory=dict)  # extra settings for every process
    nodes: int = 2
    worker_processes: int = 1
    worker_threads: int = 8


@dataclass
class WebStack:
    processes: Processes
    nodes: list[Proc]
    workers: Proc | None

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes if n.port is not None]

    def url(self, path: str = "/", node: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[node]}{path}"


def start_web_stack(stack_env: dict[str, str], options: WebStackOptions) -> WebStack:
    """Real ingress nodes and a worker pool, dev tokens on; call ``.processes.stop_all()`` when done."""
    procs = Processes(
        {
            **stack_env,
            "ALLOW_DEV_TOKENS": "1",
            "RATE_LIMITS": "200/1s",
            "TWILIO_AUTH_TOKEN": isolation.TWILIO_AUTH_TOKEN,
            "META_APP_SECRET": isolation.META_APP_SECRET,
            "META_VERIFY_TOKEN": isolation.META_VERIFY_TOKEN,
            "PUBLIC_BASE_URL": isolation.PUBLIC_BASE_URL,
            **options.env,
        }
    )
    try:
        nodes = [procs.ingress() for _ in range(options.nodes)]
        workers = (
            procs.workers(options.queues, processes=options.worker_processes, threads=options.worker_threads)
            if options.queues
            else None
        )
    except BaseException:
        procs.stop_all()
        raise
    return WebStack(procs, nodes, workers)


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


async def dev_token(
    http: aiohttp.ClientSession,
    stack: WebStack,
    user_id: str,
    name: str | None = None,
    role: str = "user",
    tenant: str | None = None,
) -> str:
    body: dict[str, str] = {"userId": user_id, "role": role}
    if name:
        body["name"] = name
    if tenant:
        body["tenant"] = tenant
    async with http.post(stack.url("/api/dev/token"), json=body) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["token"]


async def sign_in_with_token(page: Page, url: str, token: str) -> None:
    """Open ``url`` already signed in: the token goes where the pages keep it, then the page loads."""
    await page.goto(url)
    await page.evaluate("([key, token]) => sessionStorage.setItem(key, token)", [TOKEN_KEY, token])
    await page.reload()


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


async def take_screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as ``tests/artifacts/screenshots/<name>.png`` (kept as a CI artifact)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def screenshot() -> Callable[[Page, str], Awaitable[Path]]:
    return take_screenshot
