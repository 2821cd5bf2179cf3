"""Hypothesis-generated requests against a sample app: no 5xx except the ones a handler asked for.

The engine runs on a loop in a background thread for the whole module; each example sends one raw
request over a fresh connection (no client-side normalisation) and checks the answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyiii import InitOptions, register_worker
from pyiii.config import HttpSettings
from pyiii.testing import start_server


class Background:
    """An engine with the HTTP module and a sample app, on its own event loop thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server, self.worker = self.run(self._start())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _start(self) -> Any:
        server = await start_server(http=HttpSettings(port=0, default_timeout_ms=5000, body_limit_bytes=4096))
        worker = register_worker(server.engine, InitOptions(worker_name="fuzz"))

        async def echo(data: Any) -> Any:
            return {"p": data["path_params"], "q": data["query_params"], "b": data["body"]}

        async def envelope(data: Any) -> Any:
            code = data["query_params"].get("code", "200")
            return {"status_code": int(code) if code.isdigit() else code, "body": data["body"]}

        async def stream(data: Any) -> Any:
            await data["request_body"].read_all()
            return None

        async def continue_(data: Any) -> Any:
            return {"action": "continue"}

        worker.register_function("fz::echo", echo)
        worker.register_function("fz::envelope", envelope)
        worker.register_function("fz::stream", stream)
        worker.register_function("fz::mw", continue_)
        routes = [
            ("fz::echo", "/items/:id", "GET"),
            ("fz::echo", "/items/:id", "POST"),
            ("fz::echo", "/items/new", "GET"),
            ("fz::envelope", "/env", "GET"),
            ("fz::stream", "/upload", "PUT"),
            ("fz::echo", "/files/{*rest}", "GET"),
            ("fz::echo", "/mw/:a/:b", "DELETE"),
        ]
        for function_id, path, method in routes:
            config: dict[str, Any] = {"api_path": path, "http_method": method}
            if path.startswith("/mw"):
                config["middleware_function_ids"] = ["fz::mw"]
            worker.register_trigger({"type": "http", "function_id": function_id, "config": config})
        for _, path, method in routes:
            await server.http.wait_for_route(method, path)
        return server, worker

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        host, port = self.server.http.address
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(raw)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = b"" if raw.startswith(b"HEAD ") else await reader.readexactly(length)
        finally:
            writer.close()
        return int(head.split(b" ", 2)[1]), body

    def stop(self) -> None:
        async def stop() -> None:
            await self.worker.shutdown_async()
            await self.server.stop()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def app() -> Iterator[Background]:
    background = Background()
    try:
        yield background
    finally:
        background.stop()


segment = st.one_of(
    st.sampled_from(
        ["items", "new", "env", "upload", "files", "mw", "..", ".", "", "%2F", "%00", "%ZZ", "a+b"]
    ),
    st.text(max_size=8).map(lambda s: quote(s, safe="")),
)
path = st.lists(segment, min_size=1, max_size=5).map(lambda segs: "/" + "/".join(segs))
query = st.one_of(
    st.just(""),
    st.lists(
        st.tuples(
            st.text(max_size=5), st.one_of(st.text(max_size=5), st.sampled_from(["200", "404", "abc", "999"]))
        )
    ).map(lambda pairs: "?" + "&".join(quote(k, safe="=%") + "=" + quote(v, safe="%") for k, v in pairs)),
    st.sampled_from(["?", "?&&", "?=", "?a=%", "?%E2%82=1", "?code=500x"]),
)
method = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PROPFIND"])
content_type = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "application/octet-stream", None]
)
body = st.one_of(
    st.just(b""), st.binary(max_size=64), st.sampled_from([b"{", b"[1,2]", b'{"a":null}', b"x" * 5000])
)
header = st.tuples(
    st.sampled_from(["X-A", "Origin", "Access-Control-Request-Method", "Authorization", "Accept"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=10),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=method,
    path=path,
    query=query,
    content_type=content_type,
    body=body,
    headers=st.lists(header, max_size=3),
)
def test_no_unexpected_server_errors(
    app: Background,
    method: str,
    path: str,
    query: str,
    content_type: str | None,
    body: bytes,
    headers: list[tuple[str, str]],
) -> None:
    """Any generated request gets a non-5xx answer unless the /env handler asked for that status."""
    lines = [
        f"{method} {path}{query} HTTP/1.1",
        "Host: fuzz",
        "Connection: close",
        f"Content-Length: {len(body)}",
    ]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines += [f"{name}: {value.strip()}" for name, value in headers]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    status, reply = app.run(app.request(raw))
    asked = path == "/env" and method in ("GET", "HEAD")
    assert status < 500 or asked, (status, reply)
    if status in (404, 413, 422) and method != "HEAD":
        assert reply.startswith(b'{"error":')
