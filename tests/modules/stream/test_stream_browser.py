"""The browser client (``pyiii/static/pyiii-stream.js``) in headless Chromium against a real engine.

Everything is real: Debian's ``/usr/bin/chromium`` driven by Playwright, the page served by an aiohttp
site on a free port importing the client module as the package ships it, an engine with ``iii-stream``
on a free port, and a pyiii SDK worker connected over its WebSocket making the changes. The page
renders each subscription into the DOM (``browser_page.html``); the tests assert on what it shows.

Absence is checked without sleeping: the page's ``streamClient.ping()`` resolves on the listener's
pong, and the listener handles a connection's messages and writes its frames in order, so once the
pong is in, every frame of an earlier change (enqueued before the worker's call returned, §4.4) has
been applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from browser_harness import StaticSite, TcpProxy, launch_chromium
from playwright.async_api import Browser, Page, expect

from helpers import TIME_FACTOR
from pyiii import III, InitOptions, register_worker
from pyiii.config import StreamSettings
from pyiii.testing import start_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(int(120 * TIME_FACTOR))]

expect.set_options(timeout=10_000 * TIME_FACTOR)

#: Reconnect quickly in tests (the defaults start at 500 ms).
FAST_RECONNECT = {"initialDelayMs": 20, "maxDelayMs": 200}
TODOS = {"stream": "todos", "group": "all"}

OpenPage = Callable[..., Awaitable[Page]]


# ---------------------------------------------------------------------------------------------- fixtures


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Any]:
    """An engine with the stream module on a free port (and its worker listener)."""
    srv = await start_server(stream=StreamSettings(port=0))
    try:
        yield srv
    finally:
        await srv.stop()


@pytest_asyncio.fixture
async def worker(server: Any) -> AsyncIterator[III]:
    """A pyiii SDK worker on the engine's WebSocket (register_worker blocks: run in a thread)."""
    client = await asyncio.to_thread(register_worker, server.url, InitOptions(worker_name="browser-test"))
    try:
        yield client
    finally:
        await client.shutdown_async()


@pytest_asyncio.fixture
async def site() -> AsyncIterator[StaticSite]:
    started = await StaticSite().start()
    try:
        yield started
    finally:
        await started.stop()


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as launched:
        yield launched


@pytest_asyncio.fixture
async def open_page(browser: Browser, site: StaticSite) -> AsyncIterator[OpenPage]:
    """``await open_page(ws_url, [targets], **client_options)``; fails the test on any page error."""
    errors: list[str] = []

    async def open_(ws: str, subs: list[dict[str, Any]], **options: Any) -> Page:
        page = await browser.new_page()
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: errors.append(f"console: {msg.text}") if "pyiii-stream" in msg.text else None,
        )
        await page.goto(site.page_url(ws, subs, **options))
        return page

    yield open_
    assert errors == []


async def call(worker: III, function_id: str, payload: Any) -> Any:
    return await worker.trigger_async({"function_id": function_id, "payload": payload})


async def put(worker: III, item_id: str, value: Any, stream: str = "todos", group: str = "all") -> None:
    await call(
        worker, "stream::set", {"stream_name": stream, "group_id": group, "item_id": item_id, "data": value}
    )


async def barrier(page: Page) -> None:
    """Until the listener has answered a ping sent now: every earlier frame has been applied."""
    await page.evaluate("streamClient.ping()")


def sub(page: Page, index: int) -> Any:
    return page.locator(f'section[data-sub="{index}"]')


def item(page: Page, index: int, item_id: str) -> Any:
    return sub(page, index).locator(f'.items li[data-id="{item_id}"]')


# ---------------------------------------------------------------------------------------------- tests


async def test_group_subscription_shows_snapshot_and_worker_changes(
    server: Any, worker: III, open_page: OpenPage
) -> None:
    """A group subscription renders the sync snapshot, then a worker's stream::set and stream::delete."""
    await put(worker, "t0", {"id": "t0", "title": "before the page"})
    page = await open_page(server.stream.url, [TODOS])
    await expect(sub(page, 0)).to_have_attribute("data-syncs", "1")
    await expect(item(page, 0, "t0")).to_have_text('{"id":"t0","title":"before the page"}')

    await put(worker, "t1", {"id": "t1", "title": "buy milk"})
    await expect(item(page, 0, "t1")).to_have_text('{"id":"t1","title":"buy milk"}')
    await put(worker, "t1", {"id": "t1", "title": "buy milk", "done": True})
    await expect(item(page, 0, "t1")).to_have_text(
        '{"done":true,"id":"t1","title":"buy milk"}'
    )  # keys sorted (state.md §3.3)
    await call(worker, "stream::delete", {"stream_name": "todos", "group_id": "all", "item_id": "t0"})
    await expect(item(page, 0, "t0")).to_have_count(0)
    await expect(sub(page, 0).locator(".items li")).to_have_count(1)


async def test_item_subscription_sees_only_its_item(server: Any, worker: III, open_page: OpenPage) -> None:
    """An item subscription starts empty for a missing item and then holds that item alone."""
    page = await open_page(server.stream.url, [{**TODOS, "id": "t1"}])
    await expect(sub(page, 0)).to_have_attribute("data-syncs", "1")
    await put(worker, "t2", {"id": "t2"})
    await put(worker, "t1", {"id": "t1", "title": "mine"})
    await expect(item(page, 0, "t1")).to_have_text('{"id":"t1","title":"mine"}')
    await barrier(page)
    await expect(sub(page, 0).locator(".items li")).to_have_count(1)


async def test_send_events_reach_on_event(server: Any, worker: III, open_page: OpenPage) -> None:
    """stream::send without id reaches group subscriptions only; with an id also that item's subscription."""
    page = await open_page(server.stream.url, [TODOS, {**TODOS, "id": "t1"}])
    for i in (0, 1):
        await expect(sub(page, i)).to_have_attribute("data-syncs", "1")
    send = {"stream_name": "todos", "group_id": "all", "type": "typing", "data": {"user": "ann"}}
    await call(worker, "stream::send", send)
    await call(worker, "stream::send", {**send, "id": "t1", "data": {"user": "bob"}})
    await expect(sub(page, 0).locator(".events li")).to_have_text(
        ['typing {"user":"ann"}', 'typing {"user":"bob"}']
    )
    await expect(sub(page, 1).locator(".events li")).to_have_text(['typing {"user":"bob"}'])


async def test_overlapping_subscriptions_apply_each_change_once(
    server: Any, worker: III, open_page: OpenPage
) -> None:
    """A group and an item subscription on one page each apply a change of that item once (of two frames)."""
    page = await open_page(server.stream.url, [TODOS, {**TODOS, "id": "t1"}])
    for i in (0, 1):
        await expect(sub(page, i)).to_have_attribute("data-syncs", "1")
    await put(worker, "t1", {"id": "t1", "n": 1})
    await put(worker, "t1", {"id": "t1", "n": 2})
    await barrier(page)
    for i in (0, 1):
        await expect(item(page, i, "t1")).to_have_text('{"id":"t1","n":2}')
        await expect(sub(page, i)).to_have_attribute("data-changes", "3")  # sync + two updates


async def test_rejected_join_calls_on_error(server: Any, worker: III, open_page: OpenPage) -> None:
    """A join rejected by a stream:join trigger reaches onError as unauthorized; other subscriptions work."""

    def gate(payload: dict[str, Any]) -> Any:
        return {"unauthorized": True} if payload.get("group_id") == "secret" else None

    worker.register_function("test::gate", gate)
    worker.register_trigger(
        {"type": "stream:join", "function_id": "test::gate", "config": {"stream_name": "todos"}}
    )
    await call(worker, "engine::functions::list", {})  # the engine has handled the registrations by now
    page = await open_page(server.stream.url, [{"stream": "todos", "group": "secret"}, TODOS])
    await expect(sub(page, 0)).to_have_attribute("data-error", "unauthorized")
    await expect(sub(page, 0)).to_have_attribute("data-state", "unauthorized")
    await expect(sub(page, 1)).to_have_attribute("data-syncs", "1")
    await put(worker, "x", {"id": "x"}, group="secret")
    await put(worker, "t1", {"id": "t1"})
    await expect(item(page, 1, "t1")).to_be_visible()
    await barrier(page)
    await expect(sub(page, 0).locator(".items li")).to_have_count(0)


async def test_reconnects_after_the_connection_dies_and_rejoins(
    server: Any, worker: III, open_page: OpenPage
) -> None:
    """When the socket dies the client retries with backoff, re-joins, resyncs and gets later changes."""
    proxy = await TcpProxy("127.0.0.1", server.stream.port).start()
    try:
        page = await open_page(proxy.ws_url(), [TODOS], **FAST_RECONNECT)
        await expect(sub(page, 0)).to_have_attribute("data-syncs", "1")
        await put(worker, "t1", {"id": "t1", "v": "seen live"})
        await expect(item(page, 0, "t1")).to_be_visible()

        proxy.go_down()  # the open connection dies; new ones are cut at once
        await proxy.wait_refused(3)  # the client keeps trying (with backoff)
        await expect(page.locator("#client")).to_have_attribute("data-status", "reconnecting")
        await put(worker, "t2", {"id": "t2", "v": "made while away"})
        await call(worker, "stream::delete", {"stream_name": "todos", "group_id": "all", "item_id": "t1"})
        proxy.come_back()

        await expect(sub(page, 0)).to_have_attribute("data-syncs", "2")  # re-joined: a fresh snapshot
        await expect(item(page, 0, "t2")).to_have_text('{"id":"t2","v":"made while away"}')
        await expect(item(page, 0, "t1")).to_have_count(0)
        await expect(page.locator("#client")).to_have_attribute("data-connections", "2")
        await put(worker, "t3", {"id": "t3", "v": "after the reconnect"})
        await expect(item(page, 0, "t3")).to_have_text('{"id":"t3","v":"after the reconnect"}')
    finally:
        await proxy.stop()


async def test_reconnects_to_a_restarted_listener(open_page: OpenPage) -> None:
    """After an engine restart on the same stream port (1001, refused connects) the client is re-joined."""
    first = await start_server(stream=StreamSettings(port=0))
    port = first.stream.port
    try:
        page = await open_page(first.stream.url, [TODOS], **FAST_RECONNECT)
        await expect(sub(page, 0)).to_have_attribute("data-syncs", "1")
    finally:
        await first.stop()
    await expect(page.locator("#client")).to_have_attribute("data-status", "reconnecting")

    second = await start_server(stream=StreamSettings(port=port))
    try:
        worker = await asyncio.to_thread(
            register_worker, second.url, InitOptions(worker_name="after-restart")
        )
        try:
            await expect(sub(page, 0)).to_have_attribute("data-syncs", "2")
            await put(worker, "t1", {"id": "t1", "v": "from the new engine"})
            await expect(item(page, 0, "t1")).to_have_text('{"id":"t1","v":"from the new engine"}')
        finally:
            await worker.shutdown_async()
    finally:
        await second.stop()


async def test_backoff_grows_exponentially_with_jitter_and_is_capped(
    browser: Browser, site: StaticSite
) -> None:
    """backoffDelay doubles from initialDelayMs to the maxDelayMs cap; the jitter share is random."""
    page = await browser.new_page()
    await page.goto(site.page_url("ws://127.0.0.1:9/", []))
    await page.wait_for_function("typeof window.backoffDelay === 'function'")
    delays = await page.evaluate(
        """() => {
          const o = {initialDelayMs: 500, maxDelayMs: 15000, backoffFactor: 2, jitter: 0.5};
          return [0, 1, 2, 5, 10].map(a => [backoffDelay(a, o, () => 0), backoffDelay(a, o, () => 1)]);
        }"""
    )
    assert delays == [[250, 500], [500, 1000], [1000, 2000], [7500, 15000], [7500, 15000]]
