"""Handler results to responses (spec/http.md §11, checklist 19-23)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from http_harness import HttpHarness

from pyiii import III
from pyiii.modules.http import response as resp


def reply(value: Any) -> Any:
    async def handler(data: Any) -> Any:
        return value

    return handler


@pytest.mark.parametrize(
    ("result", "status", "body"),
    [
        ({"status_code": 200, "body": {"a": 1}}, 200, b'{"a":1}'),
        ({"status_code": 201, "body": {"id": "x"}}, 201, b'{"id":"x"}'),
        ({"status_code": 404, "body": {"e": 1}}, 404, b'{"e":1}'),
        ({"status_code": 500, "body": "bad"}, 500, b'"bad"'),
        ({"statusCode": 201, "body": 1}, 201, b"1"),
        ({"status_code": "abc", "body": 1}, 200, b"1"),
        ({"status_code": 201}, 201, b"{}"),
        ({"message": "hi"}, 200, b'{"message":"hi"}'),
        ("text", 200, b'"text"'),
        ([1, 2], 200, b"[1,2]"),
        ({"status_code": 200, "body": "héllo"}, 200, '"héllo"'.encode()),
    ],
)
async def test_results_and_envelopes(
    http: HttpHarness, worker: III, result: Any, status: int, body: bytes
) -> None:
    """Envelope statuses, statusCode, bad status, missing body and plain values (items 19, 21)."""
    await http.route(worker, "f::r", reply(result), "/r")
    got_status, headers, got_body = await http.request("GET", "/r")
    assert (got_status, got_body) == (status, body)
    assert headers["content-type"] == "application/json"


async def test_envelope_headers_and_raw_bodies(http: HttpHarness, worker: III) -> None:
    """Headers as a list or an object, bad entries dropped, text/xml sent raw (item 20)."""
    await http.route(
        worker,
        "f::xml",
        reply({"status_code": 200, "headers": {"Content-Type": "text/xml", "X-N": 5}, "body": "<note/>"}),
        "/xml",
    )
    await http.route(
        worker,
        "f::list",
        reply(
            {
                "headers": ["Set-Cookie: a=1", "Set-Cookie: b=2", "nocolon", 7, ": empty", "X-Y :  z "],
                "body": None,
            }
        ),
        "/list",
    )
    status, headers, body = await http.request("GET", "/xml")
    assert (status, headers["content-type"], body) == (200, "text/xml", b"<note/>")
    assert "x-n" not in headers
    status, headers, body = await http.request("GET", "/list")
    assert headers.getall("set-cookie") == ["a=1", "b=2"]
    assert headers["x-y"] == "z"
    assert (headers["content-type"], body) == ("application/json", b"null")


def test_serialization_table() -> None:
    """§11.2 rule 4: null body with a content type sends nothing; objects are JSON whatever the type."""
    assert resp.from_result({"headers": {"content-type": "text/plain"}, "body": None}).body == b""
    assert resp.from_result({"headers": {"content-type": "text/plain"}, "body": {"a": 1}}).body == b'{"a":1}'
    assert resp.from_result({"status_code": 1000}).status == 200
    assert resp.from_result({"status_code": 999}).status == 999
    assert resp.from_result({"status_code": True}).status == 200


async def test_null_result_gives_204(http: HttpHarness, worker: III) -> None:
    """Returning null without touching the response channel gives 204 within one second (item 22)."""
    await http.route(worker, "f::none", reply(None), "/none")
    start = time.monotonic()
    status, headers, body = await http.request("GET", "/none")
    assert (status, body) == (204, b"")
    assert "content-type" not in headers
    assert time.monotonic() - start < 1.0


async def test_handler_error_gives_500_with_error_id(http: HttpHarness, worker: III) -> None:
    """A raising handler gives 500 with its code, message and a 1-12 char hex error_id (item 23)."""

    async def boom(data: Any) -> Any:
        raise RuntimeError("kaput")

    await http.route(worker, "f::boom", boom, "/boom")
    status, data = await http.json("GET", "/boom")
    assert status == 500
    error = data["error"]
    assert (error["code"], error["message"]) == ("invocation_failed", "kaput")
    assert 1 <= len(error["error_id"]) <= 12 and int(error["error_id"], 16) >= 0
    assert "stacktrace" not in error


async def test_unknown_function_gives_function_not_found(http: HttpHarness, worker: III) -> None:
    """A route whose function is not registered gives 500 function_not_found (§11.3)."""
    worker.register_trigger({"type": "http", "function_id": "nobody::home", "config": {"api_path": "/ghost"}})
    await http.module.wait_for_route("GET", "/ghost")
    status, data = await http.json("GET", "/ghost")
    assert (status, data["error"]["code"]) == (500, "function_not_found")
    assert data["error"]["message"] == "Function nobody::home not found in namespace default."
