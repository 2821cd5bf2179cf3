"""The request object a handler receives (spec/http.md §8, checklist 12-18)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from http_harness import HttpHarness

from pyiii import III

MIB = 1024 * 1024


async def capture(http: HttpHarness, worker: III, api_path: str, method: str = "GET") -> list[Any]:
    """Route ``method api_path`` to a handler that records its data and answers with it."""
    seen: list[Any] = []

    async def handler(data: Any) -> Any:
        seen.append(data)
        return {"seen": {k: v for k, v in data.items() if k not in ("request_body", "response")}}

    await http.route(worker, "cap::" + method + api_path, handler, api_path, method)
    return seen


async def seen(http: HttpHarness, method: str, path: str, **kwargs: Any) -> Any:
    """The request object (minus channels) that a :func:`capture` route received."""
    status, data = await http.json(method, path, **kwargs)
    assert status == 200, data
    return data["seen"]


async def test_path_is_the_template_and_method_the_actual_one(http: HttpHarness, worker: III) -> None:
    """`path` and `trigger.path` are the registered template; `method` is the request's (item 12)."""
    await capture(http, worker, "items/:id")
    data = await seen(http, "GET", "/items/9")
    assert data["path"] == "items/:id"
    assert data["trigger"] == {"type": "http", "path": "items/:id", "method": "GET"}
    assert data["method"] == "GET"


async def test_query_parameters(http: HttpHarness, worker: III) -> None:
    """Single values, last wins, form-decoded; a bare name is "" and no query is {} (item 13)."""
    await capture(http, worker, "/q")
    assert (await seen(http, "GET", "/q?q=hello&limit=10"))["query_params"] == {"q": "hello", "limit": "10"}
    assert (await seen(http, "GET", "/q?a=1&a=2"))["query_params"] == {"a": "2"}
    assert (await seen(http, "GET", "/q?s=a+b%20c"))["query_params"] == {"s": "a b c"}
    assert (await seen(http, "GET", "/q?flag&&x=%FF"))["query_params"] == {"flag": "", "x": "\ufffd"}
    assert (await seen(http, "GET", "/q"))["query_params"] == {}


async def test_path_parameters_are_decoded(http: HttpHarness, worker: III) -> None:
    """`/items/hello%20world` gives `{"id":"hello world"}` (item 14)."""
    await capture(http, worker, "/items/:id")
    assert (await seen(http, "GET", "/items/hello%20world"))["path_params"] == {"id": "hello world"}


async def test_headers_lower_case_last_wins(http: HttpHarness, worker: III) -> None:
    """Header names are lower-case; a repeated header keeps the last value (item 15)."""
    await capture(http, worker, "/hdr")
    headers = [("X-Token", "one"), ("X-Token", "two"), ("X-Other", "v")]
    data = await seen(http, "GET", "/hdr", headers=headers)
    assert data["headers"]["x-token"] == "two"
    assert data["headers"]["x-other"] == "v"
    assert "host" in data["headers"]


async def test_header_values_that_are_not_printable_ascii(http: HttpHarness, worker: III) -> None:
    """§8.3: a header value with a byte outside printable ASCII and tab is ``""`` (its name stays);
    tabs and printable ASCII pass unchanged. Sent as raw bytes, so no client library rewrites them.
    (Control characters and DEL never get this far: the parser refuses them with 400.)"""
    await capture(http, worker, "/hdr")
    host, port = http.module.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"GET /hdr HTTP/1.1\r\nHost: x\r\nX-Latin: caf\xe9\r\nX-High: a\xffb\r\n"
        b"X-Tab: a\tb ~\r\nConnection: close\r\n\r\n"
    )
    reply = await reader.read()
    writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    headers = json.loads(body)["seen"]["headers"]
    assert (headers["x-latin"], headers["x-high"], headers["x-tab"]) == ("", "", "a\tb ~")


async def test_json_body(http: HttpHarness, worker: III) -> None:
    """A JSON body is parsed; invalid JSON gives null and the handler still runs (item 16)."""
    await capture(http, worker, "/j", "POST")
    assert (await seen(http, "POST", "/j", json={"name": "x"}))["body"] == {"name": "x"}
    invalid = await seen(
        http, "POST", "/j", data=b"{nope", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert invalid["body"] is None
    vendor = await seen(http, "POST", "/j", data=b"{}", headers={"Content-Type": "application/vnd.api+json"})
    assert vendor["body"] is None


async def test_json_bytes_on_request_body_channel(http: HttpHarness, worker: III) -> None:
    """The raw JSON bytes can be read from request_body; an empty body closes it with nothing (item 16)."""

    async def raw(data: Any) -> Any:
        content = await data["request_body"].read_all()
        return {"raw": content.decode(), "parsed": data["body"]}

    await http.route(worker, "f::raw", raw, "/raw", "POST")
    text = '{"a": [1, 2]}'
    status, data = await http.json("POST", "/raw", data=text, headers={"Content-Type": "application/json"})
    assert (status, data) == (200, {"raw": text, "parsed": {"a": [1, 2]}})
    status, data = await http.json("POST", "/raw", data=b"", headers={"Content-Type": "application/json"})
    assert (status, data) == (200, {"raw": "", "parsed": None})


async def test_non_json_bodies_stream_intact(http: HttpHarness, worker: III) -> None:
    """octet-stream, urlencoded and multipart bodies arrive intact on request_body, 5 MiB too (item 17)."""

    async def size(data: Any) -> Any:
        content = await data["request_body"].read_all()
        return {"got": data["body"], "len": len(content), "head": content[:20].decode("latin-1")}

    await http.route(worker, "f::size", size, "/upload", "POST")
    big = bytes(range(256)) * (5 * MIB // 256)
    status, data = await http.json(
        "POST", "/upload", data=big, headers={"Content-Type": "application/octet-stream"}
    )
    assert (status, data["len"], data["got"]) == (200, len(big), None)
    status, data = await http.json("POST", "/upload", data={"a": "b c"})
    assert data == {"got": None, "len": 5, "head": "a=b+c"}
    form = aiohttp.FormData()
    form.add_field("file", b"xyz", filename="f.bin")
    status, data = await http.json("POST", "/upload", data=form)
    assert status == 200 and data["len"] > 3 and data["head"].startswith("--")


async def test_json_body_over_the_limit(make_http: Any) -> None:
    """A JSON body over body_limit gives 413, with Content-Length and chunked (item 18)."""
    http = await make_http(body_limit_bytes=100)
    worker = http.worker()
    await capture(http, worker, "/small", "POST")
    expected = {
        "error": {"code": "PAYLOAD_TOO_LARGE", "message": "Request body exceeds the limit of 100 bytes"}
    }
    payload = json.dumps({"k": "x" * 200}).encode()
    assert await http.json("POST", "/small", data=payload, headers={"Content-Type": "application/json"}) == (
        413,
        expected,
    )

    async def chunks() -> Any:
        for _ in range(10):
            yield b'"xxxxxxxxxxxxxxxxxxxx"'

    status, data = await http.json(
        "POST", "/small", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert (status, data) == (413, expected)
    assert (await seen(http, "POST", "/small", json={"k": 1}))["body"] == {"k": 1}


async def test_channel_refs_in_a_json_body_reach_an_in_process_handler_as_readers(
    http: HttpHarness, worker: III
) -> None:
    """A channel ref in a JSON body becomes a reader for an in-process handler, as for a remote one
    (protocol.md §9), spelled out or with a \\u escape; the request's own two channels are a reader
    and a writer whatever the body. (The HTTP module tells the in-process SDK where refs can be,
    ``PayloadHint``: a wrong "only the two channels" fails here.)"""
    from pyiii.sdk.channels import ChannelReader, ChannelWriter

    got: list[Any] = []

    async def handler(data: Any) -> Any:
        got.append(data)
        return {"ok": True}

    await http.route(worker, "refs::post", handler, "/refs", "POST")
    ref = '{"channel_id":"c1","access_key":"k1","direction":"read"}'
    escaped = '{"\\u0063hannel_id":"c1","access_key":"k1","direction":"read"}'
    for body in (f'{{"in":{ref}}}', f'{{"in":[{escaped}]}}', '{"in":{"n":1}}'):
        status, _ = await http.json("POST", "/refs", data=body, headers={"Content-Type": "application/json"})
        assert status == 200
    spelled, escaped_ref, plain = got
    assert isinstance(spelled["body"]["in"], ChannelReader)
    assert spelled["body"]["in"].ref == {"channel_id": "c1", "access_key": "k1", "direction": "read"}
    assert isinstance(escaped_ref["body"]["in"][0], ChannelReader)
    assert plain["body"] == {"in": {"n": 1}}
    for data in got:
        assert isinstance(data["request_body"], ChannelReader)
        assert isinstance(data["response"], ChannelWriter)
