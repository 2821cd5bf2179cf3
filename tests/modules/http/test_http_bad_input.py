"""Bad input (issue 4): each case gets the spec's status and, where the spec gives one, a JSON
envelope; the server stays up and other requests are unaffected."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from http_harness import HttpHarness

from helpers import NO_REPLY, RawWorker
from pyiii import III

NOT_FOUND = {"error": {"code": "NOT_FOUND", "message": "Not Found"}}


async def echo(data: Any) -> Any:
    return {"path_params": data["path_params"], "query": data["query_params"], "got": data["body"]}


async def raw_request(http: HttpHarness, head: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client normalisation); returns the status and the whole reply."""
    host, port = http.module.address or ("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head)
        await writer.drain()
        data = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in data.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        data += await reader.readexactly(length)
    finally:
        writer.close()
    return int(data.split(b" ", 2)[1]), data


def refused(reply: bytes) -> tuple[int, dict[str, str], Any]:
    """A parser-level refusal: status, lower-cased headers and the JSON body; checks the envelope and
    the permissive CORS headers (§3 step 10, §14)."""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"] == "application/json"
    assert headers["access-control-allow-origin"] == "*"
    assert headers["access-control-expose-headers"] == "*"
    value = json.loads(body)
    assert set(value) == {"error"} and isinstance(value["error"]["message"], str)
    return int(lines[0].split(" ", 2)[1]), headers, value


async def still_serving(http: HttpHarness) -> None:
    assert await http.json("GET", "/ok/1") == (200, {"path_params": {"id": "1"}, "query": {}, "got": None})


async def test_invalid_json_and_wrong_content_types(http: HttpHarness, worker: III) -> None:
    """Invalid JSON gives body null (not 400); a non-JSON type streams; the handler runs each time."""
    await http.route(worker, "f::ok", echo, "/ok/:id", "POST")
    await http.route(worker, "f::ok-get", echo, "/ok/:id")
    for data, ctype in [
        (b"{bad", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"{}", "text/json"),
    ]:
        status, body = await http.json("POST", "/ok/1", data=data, headers={"Content-Type": ctype})
        assert (status, body["got"]) == (200, None)
    await still_serving(http)


async def test_huge_bodies(make_http: Any) -> None:
    """A huge JSON body is refused with 413 before reading; a huge declared length too (§8.4)."""
    http = await make_http(body_limit_bytes=1024)
    worker = http.worker()
    await http.route(worker, "f::ok", echo, "/ok/:id", "POST")
    await http.route(worker, "f::ok-get", echo, "/ok/:id")
    status, body = await http.json(
        "POST", "/ok/1", data=b"[" + b"1," * 100_000 + b"1]", headers={"Content-Type": "application/json"}
    )
    assert (status, body["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    status, reply = await raw_request(
        http,
        b"POST /ok/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 99999999999\r\nConnection: close\r\n\r\n{",
    )
    assert status == 413 and b"PAYLOAD_TOO_LARGE" in reply
    await still_serving(http)


async def test_huge_headers(http: HttpHarness, worker: III) -> None:
    """Headers over the parser's limits are refused with 400 and the JSON envelope with CORS
    headers; the server keeps serving."""
    await http.route(worker, "f::ok-get", echo, "/ok/:id")
    big = b"GET /ok/1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    many = b"GET /ok/1 HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(500)) + b"\r\n"
    for head in (big, many):
        _, reply = await raw_request(http, head)
        status, _, body = refused(reply)
        assert (status, body["error"]["code"]) == (400, "BAD_REQUEST")
        await still_serving(http)


async def test_malformed_request_lines(http: HttpHarness, worker: III) -> None:
    """Malformed request lines and header lines (an over-long target too) get 400 with the
    envelope and CORS headers; each time the server keeps serving."""
    await http.route(worker, "f::ok-get", echo, "/ok/:id")
    for head in [
        b"GET\r\nHost: x\r\n\r\n",
        b"GET /ok/1 HTTX/1.1\r\nHost: x\r\n\r\n",
        b"GET /ok/1 HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"G(T /ok/1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /ok/1 HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]:
        _, reply = await raw_request(http, head)
        status, _, body = refused(reply)
        assert (status, body) == (400, {"error": {"code": "BAD_REQUEST", "message": "Bad Request"}}), head[
            :40
        ]
        await still_serving(http)


async def test_parser_refusal_with_cors_policy(make_http: Any) -> None:
    """With a configured CORS policy a refused request gets that policy's headers for an unknown
    origin (the parser never delivered the request's headers): no allow-origin, no expose-headers."""
    from pyiii.config import CorsSettings

    http = await make_http(cors=CorsSettings(allowed_origins=("http://a.test",)))
    worker = http.worker()
    await http.route(worker, "f::ok-get", echo, "/ok/:id")
    _, reply = await raw_request(
        http,
        b"BREW /ok/1 HTTP/1.1\r\nHost: x\r\nOrigin: http://a.test\r\nConnection: close\r\n\r\n",
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    assert reply.split(b" ", 2)[1] == b"400"
    assert b"content-type: application/json" in head.lower()
    assert b"access-control-" not in head.lower()
    assert json.loads(body)["error"]["code"] == "BAD_REQUEST"
    await still_serving(http)


async def test_dot_segments_and_encoded_slashes(http: HttpHarness, worker: III) -> None:
    """`..` is not resolved and `%2F` stays inside one segment (§7 rule 1)."""
    await http.route(worker, "f::ok-get", echo, "/ok/:id")
    await http.route(worker, "f::secret", echo, "/secret")
    status, reply = await raw_request(
        http, b"GET /ok/../secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 404 and reply.endswith(b'{"error":{"code":"NOT_FOUND","message":"Not Found"}}')
    status, reply = await raw_request(
        http, b"GET /ok/..%2Fsecret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200 and b'"id":"../secret"' in reply
    status, _ = await raw_request(http, b"GET /ok/a/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 404
    await still_serving(http)


async def test_unknown_methods(http: HttpHarness, worker: III) -> None:
    """An unsupported method gets 405 on a known path and 404 elsewhere; TRACE routes never match.

    A method the HTTP parser does not know at all (``BREW``) is refused by it with 400, sent with
    the JSON envelope and CORS headers like every engine error (§3, §14).
    """
    await http.route(worker, "f::ok-get", echo, "/ok/:id")
    worker.register_function("f::trace", echo)
    worker.register_trigger(
        {"type": "http", "function_id": "f::trace", "config": {"api_path": "/t", "http_method": "trace"}}
    )
    await http.module.wait_for_route("TRACE", "/t")
    status, headers, _ = await http.request("PROPFIND", "/ok/1")
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    assert await http.json("PURGE", "/nowhere") == (404, NOT_FOUND)
    assert await http.json("TRACE", "/t") == (404, NOT_FOUND)
    _, reply = await raw_request(http, b"BREW /ok/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, _, body = refused(reply)
    assert (status, body) == (400, {"error": {"code": "BAD_REQUEST", "message": "Bad Request"}})
    await still_serving(http)


async def test_malformed_query_strings(http: HttpHarness, worker: III) -> None:
    """Broken escapes, bare `=` and stray `&` are decoded leniently, never an error (§8.2)."""
    await http.route(worker, "f::ok-get", echo, "/ok/:id")
    for query, expected in [
        ("%zz=1&=&&a==b", {"%zz": "1", "": "", "a": "=b"}),
        ("x=%E2%82&y=%", {"x": "\ufffd", "y": "%"}),
        ("k", {"k": ""}),
    ]:
        status, reply = await raw_request(
            http, f"GET /ok/1?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        assert status == 200, reply
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["query"] == expected


async def test_handler_returns_garbage(http: HttpHarness, worker: III) -> None:
    """A result that cannot be sent as JSON gives 500 INTERNAL_ERROR with an error_id; others unaffected."""

    async def garbage(data: Any) -> Any:
        return {"body": object()}

    await http.route(worker, "f::garbage", garbage, "/garbage")
    await http.route(worker, "f::ok-get", echo, "/ok/:id")
    status, body = await http.json("GET", "/garbage")
    assert (status, body["error"]["code"], body["error"]["message"]) == (
        500,
        "INTERNAL_ERROR",
        "internal server error",
    )
    assert body["error"]["error_id"]
    await still_serving(http)


async def test_worker_disconnects_mid_request(http: HttpHarness, worker: III, connect: Any) -> None:
    """The worker going away during the call gives 500 invocation_stopped (§11.3)."""
    await http.route(worker, "f::ok-get", echo, "/ok/:id")
    raw: RawWorker = await connect(http.server.url)
    await raw.register("raw")
    await raw.serve("raw::never", lambda frame: NO_REPLY)
    await raw.send(
        {
            "type": "registertrigger",
            "id": "t",
            "trigger_type": "http",
            "function_id": "raw::never",
            "config": {"api_path": "/never"},
        }
    )
    await http.module.wait_for_route("GET", "/never")
    pending = asyncio.ensure_future(http.json("GET", "/never"))
    await raw.expect({"type": "invokefunction", "function_id": "raw::never"})
    await raw.close()
    status, body = await pending
    assert (status, body["error"]["code"], body["error"]["message"]) == (
        500,
        "invocation_stopped",
        "Invocation stopped",
    )
    await still_serving(http)


async def test_hanging_handler_does_not_block_others(make_http: Any) -> None:
    """A handler that never answers times out with 504 while other requests are served meanwhile."""
    http = await make_http(default_timeout_ms=300)
    worker = http.worker()

    async def hang(data: Any) -> Any:
        await asyncio.Event().wait()

    await http.route(worker, "f::hang", hang, "/hang")
    await http.route(worker, "f::ok-get", echo, "/ok/:id")
    hanging = asyncio.ensure_future(http.json("GET", "/hang"))
    await still_serving(http)
    status, body = await hanging
    assert (status, body["error"]["code"]) == (504, "TIMEOUT")
