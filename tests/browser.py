"""Browser tests: Playwright (sync API) driving Debian's Chromium against pytest-django's live
server. The `browser` fixture (tests/conftest.py, one Chromium per module) launches it with
`chromium_launched`; mark a module `needs_chromium` to skip it, with the reason, where Chromium is
missing (scripts/test-deps.sh installs it in CI)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (bash scripts/test-deps.sh installs it as root)")
WAIT_MS = 10_000


@contextmanager
def chromium_launched() -> Iterator:
    """A headless Chromium. Playwright's sync API keeps an asyncio loop on this thread while it
    is open, which makes Django refuse every ORM call of the test (and of the database flush after
    it) as "async"; they are plain synchronous code, so the check is switched off for exactly as
    long as the browser lives. The live server has its own thread and no loop."""
    from playwright.sync_api import sync_playwright

    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"],
                headless=True,
            )
            yield chromium
            chromium.close()
    finally:
        if before is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


def page_open(browser, *, console_from: Callable[[object], bool] = lambda page: True, **context_options):
    """A fresh browser context and page waiting up to `WAIT_MS` (Playwright's `expect` too), and
    the list the page's script errors go to: uncaught exceptions, and console errors while
    `console_from(page)` holds. Returns (context, page, errors): close the context, then assert
    there were no errors."""
    from playwright.sync_api import expect

    context = browser.new_context(**context_options)
    context.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" and console_from(page) else None)
    return context, page, errors
