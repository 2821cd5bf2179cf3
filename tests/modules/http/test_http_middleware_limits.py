"""Middleware, conditions, deadlines, the concurrency limit and CORS (spec/http.md §9-§10, §13-§14;
checklist 24, 28-34)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from http_harness import HttpHarness

from pyiii import III
from pyiii.config import CorsSettings, HttpMiddlewareSettings

TIMEOUT = {"error": {"code": "TIMEOUT", "message": "Request timed out"}}


def reply(value: Any, calls: list[Any] | None = None) -> Any:
    async def handler(data: Any) -> Any:
        if calls is not None:
            calls.append(data)
        return value

    return handler


async def hang(data: Any) -> Any:
    await asyncio.Event().wait()


CONTINUE = {"action": "continue"}


async def test_middleware_continue_and_respond(http: HttpHarness, worker: III) -> None:
    """`continue` reaches the handler; `respond` 403 short-circuits; in a chain a 429 stops it (item 28)."""
    seen: list[Any] = []
    handled: list[Any] = []
    worker.register_function("mw::ok", reply(CONTINUE, seen))
    worker.register_function(
        "mw::deny", reply({"action": "respond", "response": {"status_code": 403, "body": {"no": 1}}})
    )
    worker.register_function("mw::limit", reply({"action": "respond", "response": {"status_code": 429}}))
    await http.route(worker, "f::a", reply("a", handled), "/a/:id", middleware_function_ids=["mw::ok"])
    await http.route(worker, "f::b", reply("b", handled), "/b", middleware_function_ids=["mw::deny"])
    await http.route(
        worker, "f::c", reply("c", handled), "/c", middleware_function_ids=["mw::ok", "mw::limit", 5]
    )
    assert await http.json("GET", "/a/1?q=x", headers={"Authorization": "Bearer t"}) == (200, "a")
    assert seen[0]["phase"] == "preHandler" and seen[0]["context"] == {}
    assert seen[0]["request"]["path_params"] == {"id": "1"}
    assert seen[0]["request"]["query_params"] == {"q": "x"}
    assert seen[0]["request"]["headers"]["authorization"] == "Bearer t"
    assert seen[0]["request"]["method"] == "GET" and "body" not in seen[0]["request"]
    assert await http.json("GET", "/b") == (403, {"no": 1})
    assert await http.json("GET", "/c") == (429, None)
    assert len(handled) == 1


async def test_global_middleware_order_and_short_circuit(make_http: Any) -> None:
    """Global middleware runs in priority order before per-route; a global 401 stops it (items 28, 34)."""
    http = await make_http(
        middleware=(
            HttpMiddlewareSettings(function_id="g::first"),
            HttpMiddlewareSettings(function_id="g::second", priority=5),
        )
    )
    worker = http.worker()
    order: list[str] = []

    def tracked(name: str, result: Any) -> Any:
        async def handler(data: Any) -> Any:
            order.append(name)
            return result

        return handler

    worker.register_function("g::first", tracked("first", CONTINUE))
    worker.register_function("g::second", tracked("second", None))
    worker.register_function("r::mw", tracked("route", CONTINUE))
    await http.route(worker, "f::h", tracked("handler", "ok"), "/h", middleware_function_ids=["r::mw"])
    assert await http.json("GET", "/h") == (200, "ok")
    assert order == ["first", "second", "route", "handler"]
    http2 = await make_http(middleware=(HttpMiddlewareSettings(function_id="g::deny"),))
    w = http2.worker()
    w.register_function("g::deny", tracked("deny", {"action": "respond", "response": {"status_code": 401}}))
    await http2.route(w, "f::p", tracked("handler", "p"), "/p", middleware_function_ids=["r::never"])
    order.clear()
    assert (await http2.json("GET", "/p"))[0] == 401
    assert order == ["deny"]


async def test_respond_body_and_headers_rules(http: HttpHarness, worker: III) -> None:
    """`respond` without body sends null; one non-string header value drops all headers (item 29)."""
    worker.register_function("mw::nobody", reply({"action": "respond", "response": {"status_code": 418}}))
    worker.register_function(
        "mw::bad",
        reply({"action": "respond", "response": {"headers": {"x-a": "1", "x-b": 2}, "body": "s"}}),
    )
    worker.register_function(
        "mw::ctype",
        reply({"action": "respond", "response": {"headers": {"Content-Type": "text/plain"}, "body": "s"}}),
    )
    await http.route(worker, "f::1", reply(1), "/1", middleware_function_ids=["mw::nobody"])
    await http.route(worker, "f::2", reply(2), "/2", middleware_function_ids=["mw::bad"])
    await http.route(worker, "f::3", reply(3), "/3", middleware_function_ids=["mw::ctype"])
    status, headers, body = await http.request("GET", "/1")
    assert (status, headers["content-type"], body) == (418, "application/json", b"null")
    status, headers, body = await http.request("GET", "/2")
    assert (status, body) == (200, b'"s"')
    assert "x-a" not in headers
    status, headers, body = await http.request("GET", "/3")
    assert (headers["content-type"], body) == ("text/plain", b'"s"')


async def test_middleware_error_gives_500(http: HttpHarness, worker: III) -> None:
    """A middleware error gives 500 with its code and message (item 30)."""

    async def broken(data: Any) -> Any:
        raise ValueError("no entry")

    worker.register_function("mw::broken", broken)
    await http.route(worker, "f::h", reply("h"), "/h", middleware_function_ids=["mw::broken"])
    status, data = await http.json("GET", "/h")
    assert (status, data["error"]["code"], data["error"]["message"]) == (500, "invocation_failed", "no entry")
    assert "error_id" in data["error"]


async def test_conditions(http: HttpHarness, worker: III) -> None:
    """Condition false → 422 skipped; null runs the handler; an error → 500 (item 24)."""
    seen: list[Any] = []

    async def failing(data: Any) -> Any:
        raise RuntimeError("cond broke")

    worker.register_function("c::false", reply(False, seen))
    worker.register_function("c::null", reply(None))
    worker.register_function("c::err", failing)
    await http.route(worker, "f::1", reply(1), "/1", "POST", condition_function_id="c::false")
    await http.route(worker, "f::2", reply(2), "/2", condition_function_id="c::null")
    await http.route(worker, "f::3", reply(3), "/3", condition_function_id="c::err")
    await http.route(worker, "f::4", reply(4), "/4", condition_function_id="c::missing")
    status, data = await http.json("POST", "/1", json={"b": 1})
    assert (status, data) == (
        422,
        {"error": {"code": "CONDITION_NOT_MET", "message": "Request condition not met"}, "skipped": True},
    )
    assert seen[0]["body"] == {"b": 1} and "response" not in seen[0] and "request_body" not in seen[0]
    assert await http.json("GET", "/2") == (200, 2)
    status, data = await http.json("GET", "/3")
    assert (status, data["error"]["message"]) == (500, "cond broke")
    status, data = await http.json("GET", "/4")
    assert (status, data["error"]["code"]) == (500, "function_not_found")


async def test_namespace_resolution(http: HttpHarness) -> None:
    """Handler, condition and middleware resolve in the trigger's namespace (§4 rule 5, item 28)."""
    worker = http.worker("ns", namespace="shop")
    worker.register_function("mw::in-shop", reply(CONTINUE))
    worker.register_function("c::in-shop", reply(True))
    await http.route(
        worker,
        "f::shop",
        reply("shop"),
        "/shop",
        middleware_function_ids=["mw::in-shop"],
        condition_function_id="c::in-shop",
    )
    assert await http.json("GET", "/shop") == (200, "shop")


async def test_metadata_is_a_separate_argument(http: HttpHarness, worker: III) -> None:
    """The trigger's metadata reaches the handler as metadata, never merged into data (§4 rule 4)."""

    async def handler(data: Any, metadata: Any = None) -> Any:
        return {"meta": metadata, "in_data": "meta" in data}

    worker.register_function("f::m", handler)
    worker.register_trigger(
        {"type": "http", "function_id": "f::m", "config": {"api_path": "/m"}, "metadata": {"k": 1}}
    )
    await http.module.wait_for_route("GET", "/m")
    assert await http.json("GET", "/m") == (200, {"meta": {"k": 1}, "in_data": False})


async def test_deadlines(make_http: Any) -> None:
    """A hanging handler gives 504 TIMEOUT with CORS; a hanging middleware MIDDLEWARE_TIMEOUT (item 31)."""
    http = await make_http(default_timeout_ms=200)
    worker = http.worker()
    worker.register_function("mw::hang", hang)
    await http.route(worker, "f::hang", hang, "/hang")
    await http.route(worker, "f::ok", reply("ok"), "/mw", middleware_function_ids=["mw::hang"])
    status, headers, body = await http.request("GET", "/hang")
    assert (status, headers["content-type"], headers["access-control-allow-origin"]) == (
        504,
        "application/json",
        "*",
    )
    assert body == b'{"error":{"code":"TIMEOUT","message":"Request timed out"}}'
    status, headers, body = await http.request("GET", "/mw")
    assert (status, body) == (504, b'{"error":{"code":"MIDDLEWARE_TIMEOUT","message":"Middleware timeout"}}')
    assert not http.server.channels.channels  # the request's channels are gone


async def test_concurrency_limit_queues_requests(make_http: Any) -> None:
    """With a limit of 1 the second request waits until the first one's response is ready (§13.2)."""
    http = await make_http(concurrency_request_limit=1)
    worker = http.worker()
    release, first_started = asyncio.Event(), asyncio.Event()
    started: list[str] = []

    async def slow(data: Any) -> Any:
        started.append(data["query_params"]["n"])
        if data["query_params"]["n"] == "1":
            first_started.set()
            await release.wait()
        return data["query_params"]["n"]

    await http.route(worker, "f::slow", slow, "/slow")
    first = asyncio.ensure_future(http.json("GET", "/slow?n=1"))
    await first_started.wait()
    second = asyncio.ensure_future(http.json("GET", "/slow?n=2"))
    done, _ = await asyncio.wait({second}, timeout=0.3)
    assert not done and started == ["1"]
    release.set()
    assert await first == (200, "1")
    assert await second == (200, "2")


async def test_waiting_request_that_leaves_frees_no_slot_twice(make_http: Any) -> None:
    """A request queued behind the limit whose client goes away neither takes nor leaks a slot (§13.2)."""
    http = await make_http(concurrency_request_limit=1)
    worker = http.worker()
    release, first_started = asyncio.Event(), asyncio.Event()
    running = [0, 0]  # now, max

    async def slow(data: Any) -> Any:
        running[0] += 1
        running[1] = max(running)
        if data["query_params"]["n"] == "1":
            first_started.set()
            await release.wait()
        running[0] -= 1
        return data["query_params"]["n"]

    await http.route(worker, "f::slow", slow, "/slow")
    first = asyncio.ensure_future(http.json("GET", "/slow?n=1"))
    await first_started.wait()
    gone = asyncio.ensure_future(http.json("GET", "/slow?n=gone"))
    done, _ = await asyncio.wait({gone}, timeout=0.2)
    assert not done
    gone.cancel()  # the client closes its connection while queued
    with contextlib.suppress(asyncio.CancelledError):
        await gone
    release.set()
    assert await first == (200, "1")
    results = await asyncio.gather(*(http.json("GET", f"/slow?n={i}") for i in range(2, 6)))
    assert results == [(200, str(i)) for i in range(2, 6)]
    assert running[1] == 1  # never two handlers at once


async def test_cors_permissive_and_preflight(http: HttpHarness, worker: III) -> None:
    """Permissive headers on every response; preflights answered without routing; OPTIONS routed (32-33)."""
    calls: list[Any] = []
    await http.route(worker, "f::opt", reply("options", calls), "/o", "OPTIONS")
    status, headers, body = await http.request(
        "OPTIONS",
        "/o",
        headers={
            "Origin": "http://x.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, x-a",
        },
    )
    assert (status, body, calls) == (200, b"", [])
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-allow-methods"] == "*"
    assert headers["access-control-allow-headers"] == "authorization, x-a"
    assert await http.json("OPTIONS", "/o") == (200, "options")
    status, headers, _ = await http.request("GET", "/missing")
    assert (status, headers["access-control-allow-origin"], headers["access-control-expose-headers"]) == (
        404,
        "*",
        "*",
    )


async def test_cors_configured_origins(make_http: Any) -> None:
    """A listed origin is echoed with Vary; another gets no allow-origin; methods are listed (item 33)."""
    http = await make_http(
        cors=CorsSettings(allowed_origins=("http://a.test",), allowed_methods=("GET", "POST"))
    )
    worker = http.worker()
    await http.route(worker, "f::c", reply("c"), "/c")
    _, headers, _ = await http.request("GET", "/c", headers={"Origin": "http://a.test"})
    assert headers["access-control-allow-origin"] == "http://a.test"
    assert "origin" in headers["vary"] and "access-control-expose-headers" not in headers
    _, headers, _ = await http.request("GET", "/c", headers={"Origin": "http://b.test"})
    assert "access-control-allow-origin" not in headers
    _, headers, _ = await http.request(
        "OPTIONS", "/c", headers={"Origin": "http://a.test", "Access-Control-Request-Method": "GET"}
    )
    assert headers["access-control-allow-methods"] == "GET,POST"
    assert headers["access-control-allow-headers"] == "*"
