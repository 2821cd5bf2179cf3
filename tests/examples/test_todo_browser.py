"""The todo page in a real browser: Debian's headless Chromium driven by Playwright (never downloaded).

Two pages on the embedded todo app: what one page does appears in the other without a reload. The
screenshots are saved under test-artifacts/ (gitignored).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from todo_harness import ROOT, WAIT_S, Stack

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = WAIT_S * 1000


async def open_page(browser: Any, stack: Stack) -> Any:
    """The app's page, connected live (its status line says so)."""
    page = await browser.new_page(viewport={"width": 720, "height": 560})
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(f"{stack.http_url}/?stream={stack.stream_url}")
    await page.wait_for_selector("#status.live")
    return page


async def test_a_todo_added_in_one_page_appears_in_another_without_reload(
    make_stack: Callable[[str], Awaitable[Stack]],
) -> None:
    """Add in page A shows up in page B; toggling in B strikes it through in A; the counters follow;
    deleting in A removes it from B. Screenshots of both pages go to test-artifacts/."""
    from playwright.async_api import async_playwright

    stack = await make_stack("embedded")
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            first = await open_page(browser, stack)
            second = await open_page(browser, stack)
            navigations: list[str] = []
            second.on("framenavigated", lambda frame: navigations.append(frame.url))

            await first.fill("#title", "water the plants")
            await first.press("#title", "Enter")
            item = second.locator("#todos li", has_text="water the plants")
            await item.wait_for()
            await second.wait_for_function("document.getElementById('total').textContent === '1'")

            await item.locator("input[type=checkbox]").check()
            await first.locator("#todos li.done", has_text="water the plants").wait_for()
            await first.wait_for_function("document.getElementById('completed').textContent === '1'")
            await second.locator("#todos li.done", has_text="water the plants").wait_for()

            await first.fill("#title", "call mum")
            await first.press("#title", "Enter")
            await second.locator("#todos li", has_text="call mum").wait_for()
            await second.wait_for_function("document.getElementById('total').textContent === '2'")
            await save(first, "todo-page-a.png")
            await save(second, "todo-page-b.png")

            await first.locator("#todos li", has_text="water the plants").locator("button").click()
            await second.locator("#todos li", has_text="water the plants").wait_for(state="detached")
            assert await second.locator("#todos li").all_inner_texts() == ["call mum\n✕"]
            await second.wait_for_function(
                "document.getElementById('total').textContent === '1'"
                " && document.getElementById('completed').textContent === '0'"
            )
            assert navigations == []  # page B never reloaded
        finally:
            await browser.close()
    assert await stack.request("GET", "/todos/metrics") == (200, {"total": 1, "completed": 0})


async def save(page: Any, name: str) -> Path:
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    return path
