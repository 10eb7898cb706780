"""Debian's chromium driven by Playwright for Python: never a browser download.

`open_browser` launches /usr/bin/chromium headless with a fresh profile in the test's own
folder and collects every console error and uncaught page error, so a test can assert that
a page loads cleanly. A missing chromium fails with the install hint, never skips.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, ConsoleMessage, Error, async_playwright

from tests.support.wait import WAIT_S

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / ".test-output" / "web"  # screenshots a person can look at after the run


@dataclass
class Browser:
    context: BrowserContext
    errors: list[str] = field(default_factory=list)

    def watch(self, page: object) -> None:
        def console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                self.errors.append(f"console: {msg.text}")

        def page_error(err: Error) -> None:
            self.errors.append(f"page error: {err} {err.stack or ''}")

        page.on("console", console)  # type: ignore[attr-defined]  # a playwright Page
        page.on("pageerror", page_error)  # type: ignore[attr-defined]


def screenshot_path(name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT / name


@contextlib.asynccontextmanager
async def open_browser(profile: Path) -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium (make system-deps, or "
            "apt-get install -y chromium)",
            pytrace=False,
        )
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 1000},
        )  # fmt: skip
        # Playwright's own 30 s default would fail a slow but healthy run on a busy box: every
        # wait (goto, click, wait_for_function) gets the suite's generous bound instead
        context.set_default_timeout(WAIT_S * 1000)
        context.set_default_navigation_timeout(WAIT_S * 1000)
        try:
            yield Browser(context)
        finally:
            await context.close()
