"""Registration and routing through real HTTP requests and SDK workers (http.md §4-§7, checklist 1-11)."""

from __future__ import annotations

import asyncio
from typing import Any

from http_harness import HttpHarness

from helpers import RawWorker
from pyiii import III, register_worker

NOT_FOUND = {"error": {"code": "NOT_FOUND", "message": "Not Found"}}


def reply(value: Any) -> Any:
    async def handler(data: Any) -> Any:
        return value

    return handler


async def test_route_key_normalization_and_default_method(http: HttpHarness, worker: III) -> None:
    """`users/:id` is `/users/:id`; `get` is GET; a missing http_method means GET; `/` stays `/` (item 1)."""
    worker.register_function("f::user", reply("user"))
    worker.register_function("f::root", reply("root"))
    worker.register_trigger(
        {"type": "http", "function_id": "f::user", "config": {"api_path": "users/:id", "http_method": "get"}}
    )
    worker.register_trigger({"type": "http", "function_id": "f::root", "config": {"api_path": "/"}})
    await http.module.wait_for_route("GET", "/users/:id", "f::user")
    await http.module.wait_for_route("GET", "/", "f::root")
    assert await http.json("GET", "/users/1") == (200, "user")
    assert await http.json("GET", "/") == (200, "root")


async def test_missing_api_path_is_rejected_on_the_wire(http: HttpHarness, connect: Any) -> None:
    """A trigger without api_path gets trigger_registration_failed and the spec's message (item 2)."""
    raw: RawWorker = await connect(http.server.url)
    await raw.register("raw")
    await raw.send(
        {"type": "registertrigger", "id": "t1", "trigger_type": "http", "function_id": "f", "config": {}}
    )
    frame = await raw.expect("triggerregistrationresult")
    assert frame["error"] == {
        "code": "trigger_registration_failed",
        "message": "api_path is required for http triggers",
    }
    await raw.send(
        {
            "type": "registertrigger",
            "id": "t2",
            "trigger_type": "http",
            "function_id": "f",
            "config": {"api_path": "/a/:"},
        }
    )
    frame = await raw.expect("triggerregistrationresult")
    assert frame["error"]["message"].startswith("invalid api_path '/a/:': ")


async def test_same_method_and_path_last_registration_serves(http: HttpHarness, worker: III) -> None:
    """Registering the same method and path twice: the second handler serves (item 3)."""
    await http.route(worker, "f::one", reply(1), "/dup")
    await http.route(worker, "f::two", reply(2), "/dup")
    assert await http.json("GET", "/dup") == (200, 2)


async def test_conflicting_parameter_names_keep_the_first(
    http: HttpHarness, worker: III, connect: Any
) -> None:
    """Same shape, other names: rejected with the conflict message, the first keeps serving (item 4)."""
    await http.route(worker, "f::first", reply("first"), "/s/:listId/:userId")
    raw: RawWorker = await connect(http.server.url)
    await raw.register("raw")
    await raw.send(
        {
            "type": "registertrigger",
            "id": "t",
            "trigger_type": "http",
            "function_id": "f::first",
            "config": {"api_path": "/s/:userId/:listId"},
        }
    )
    frame = await raw.expect("triggerregistrationresult")
    assert "conflicts with already-registered route 'GET /s/:listId/:userId'" in frame["error"]["message"]
    assert await http.json("GET", "/s/1/2") == (200, "first")


async def test_methods_have_their_own_parameter_names(http: HttpHarness, worker: III) -> None:
    """`GET /a/:x` and `POST /a/:y` both register; each handler sees its own name (item 5)."""

    async def params(data: Any) -> Any:
        return data["path_params"]

    await http.route(worker, "f::get", params, "/a/:x")
    await http.route(worker, "f::post", params, "/a/:y", "POST")
    assert await http.json("GET", "/a/1") == (200, {"x": "1"})
    assert await http.json("POST", "/a/2") == (200, {"y": "2"})


async def test_owner_aware_unregister_and_disconnect(http: HttpHarness) -> None:
    """A registers, B re-registers, A unregisters then disconnects: B keeps serving (item 6)."""
    a, b = http.worker("a"), http.worker("b")
    trigger_a = await http.route(a, "a::h", reply("a"), "/owned")
    await http.route(b, "b::h", reply("b"), "/owned")
    trigger_a.unregister()
    await a.shutdown_async()
    assert http.module.has_route("GET", "/owned", "b::h")
    assert await http.json("GET", "/owned") == (200, "b")
    status, _, _ = await http.request("GET", "/owned")
    assert status == 200


async def test_routes_leave_with_their_worker(http: HttpHarness) -> None:
    """A worker's routes are removed when it disconnects (§6.4 rule 3); 404 afterwards."""
    gone = http.worker("gone")
    await http.route(gone, "g::h", reply("g"), "/gone")
    await gone.shutdown_async()
    await http.module.wait_for_no_route("GET", "/gone")
    assert await http.json("GET", "/gone") == (404, NOT_FOUND)


async def test_remote_worker_serves_and_its_routes_leave_with_it(http: HttpHarness) -> None:
    """A remote SDK worker serves a route; after it disconnects the route is gone (§6.4)."""
    remote = await asyncio.to_thread(register_worker, http.server.url)
    try:
        await http.route(remote, "r::h", reply({"remote": True}), "/remote", "POST")
        assert await http.json("POST", "/remote", json={"x": 1}) == (200, {"remote": True})
    finally:
        await remote.shutdown_async()
    await http.module.wait_for_no_route("POST", "/remote")


async def test_reregistering_a_trigger_id_moves_the_route(http: HttpHarness, connect: Any) -> None:
    """The same trigger id with a new api_path removes the old path (item 7, H10)."""
    raw: RawWorker = await connect(http.server.url)
    await raw.register("raw")
    await raw.serve("raw::h", lambda frame: "raw")
    for path in ("/old", "/new"):
        await raw.send(
            {
                "type": "registertrigger",
                "id": "same",
                "trigger_type": "http",
                "function_id": "raw::h",
                "config": {"api_path": path},
            }
        )
        await http.module.wait_for_route("GET", path)
    assert await http.json("GET", "/old") == (404, NOT_FOUND)
    assert await http.json("GET", "/new") == (200, "raw")


async def test_not_found_method_not_allowed_and_exact_paths(http: HttpHarness, worker: III) -> None:
    """404 body, 405 with Allow, trailing slash, static over param and case sensitivity (item 8)."""

    async def which(data: Any) -> Any:
        return data["path"]

    await http.route(worker, "f::users", which, "/users")
    await http.route(worker, "f::new", which, "/users/new")
    await http.route(worker, "f::id", which, "/users/:id")
    status, headers, body = await http.request("GET", "/nothing")
    assert (status, headers["content-type"]) == (404, "application/json")
    assert body == b'{"error":{"code":"NOT_FOUND","message":"Not Found"}}'
    status, headers, body = await http.request("DELETE", "/users")
    assert (status, headers["allow"], body) == (405, "GET, HEAD", b"")
    assert (await http.json("GET", "/users/"))[0] == 404
    assert await http.json("GET", "/users/new") == (200, "/users/new")
    assert await http.json("GET", "/users/7") == (200, "/users/:id")
    assert (await http.json("GET", "/USERS"))[0] == 404


async def test_head_is_served_by_get(http: HttpHarness, worker: III) -> None:
    """HEAD on a GET route: GET's status and headers, no body; an explicit HEAD route wins (item 9)."""
    await http.route(
        worker, "f::g", reply({"status_code": 201, "headers": {"x-a": "1"}, "body": {"k": "v"}}), "/h"
    )
    status, headers, body = await http.request("HEAD", "/h")
    assert (status, headers["x-a"], body) == (201, "1", b"")
    await http.route(worker, "f::head", reply({"status_code": 202, "body": None}), "/h", "HEAD")
    status, _, _ = await http.request("HEAD", "/h")
    assert status == 202


async def test_thousand_routes(http: HttpHarness, worker: III) -> None:
    """With 1,000 routes registered every one of a sample serves its own handler (§7 rule 6)."""

    async def which(data: Any) -> Any:
        return data["path_params"]["id"] + data["path"]

    worker.register_function("f::many", which)
    for i in range(1000):
        worker.register_trigger(
            {"type": "http", "function_id": "f::many", "config": {"api_path": f"/r{i}/:id"}}
        )
    await http.module.wait_for(lambda: len(http.module.router) == 1000)
    for i in (0, 499, 999):
        assert await http.json("GET", f"/r{i}/x") == (200, f"x/r{i}/:id")
