"""The HTTP module's test harness: an engine with ``iii-http`` on a free port, SDK workers, a client,
and :class:`RawHttp`, a raw-bytes client connection for the listener's protocol-level tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from helpers import TIME_FACTOR, TIMEOUT_S
from pyiii import III, InitOptions, register_worker
from pyiii.modules.http import HttpModule


class HttpHarness:
    """An engine server with the HTTP module, its in-process workers and one client session."""

    def __init__(self, server: Any, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.workers: list[III] = []

    @property
    def module(self) -> HttpModule:
        module: HttpModule = self.server.http
        return module

    @property
    def url(self) -> str:
        return self.module.url

    def worker(self, name: str = "w", **options: Any) -> III:
        client = register_worker(self.server.engine, InitOptions(worker_name=name, **options))
        self.workers.append(client)
        return client

    async def route(
        self,
        worker: III,
        function_id: str,
        handler: Callable[..., Any],
        api_path: str,
        method: str = "GET",
        **config: Any,
    ) -> Any:
        """Register ``handler`` as ``function_id`` behind ``method api_path`` and wait until it serves."""
        worker.register_function(function_id, handler)
        trigger = worker.register_trigger(
            {
                "type": "http",
                "function_id": function_id,
                "config": {"api_path": api_path, "http_method": method, **config},
            }
        )
        await self.module.wait_for_route(method, api_path, function_id)
        return trigger

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        """``(status, headers, body)`` of one request to the HTTP listener."""
        async with self.session.request(method, self.url + path, **kwargs) as response:
            return response.status, response.headers, await response.read()

    async def json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, **kwargs) as response:
            return response.status, await response.json(content_type=None)

    async def stop(self) -> None:
        for client in self.workers:
            await client.shutdown_async()
        await self.session.close()
        await self.server.stop()


@dataclass(slots=True)
class RawResponse:
    """One response as it arrived: status, header lines (names lower-cased, in order) and the body,
    both as the client sees it (``body``, chunk framing removed) and as sent (``wire``)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    wire: bytes

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (any case), ``None`` when absent."""
        values = [v for k, v in self.headers if k == name.lower()]
        return values[-1] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class RawHttp:
    """A client connection that writes bytes exactly as given (no client normalisation) and reads
    the responses one by one with HTTP/1.1's framing rules (RFC 9112 §6.3): no body for ``HEAD``,
    1xx, 204 and 304; chunked; ``Content-Length``; otherwise up to the end of the connection.
    Every read gives up after ``TIMEOUT_S`` (scaled by ``PYIII_TEST_TIME_FACTOR``) with an error."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, address: tuple[str, int] | None) -> RawHttp:
        assert address is not None, "the listener is not started"
        reader, writer = await asyncio.open_connection(*address)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _read(self, read: Awaitable[bytes]) -> bytes:
        return await asyncio.wait_for(read, TIMEOUT_S * TIME_FACTOR)

    async def read_exactly(self, n: int) -> bytes:
        return await self._read(self.reader.readexactly(n))

    async def response(self, head: bool = False) -> RawResponse:
        """The next response; ``head``: the answer to a ``HEAD`` request (never a body)."""
        block = await self._read(self.reader.readuntil(b"\r\n\r\n"))
        lines = block[:-4].decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", lines[0]
        headers = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
        response = RawResponse(int(status), headers, b"", b"")
        if head or response.status < 200 or response.status in (204, 304):
            return response
        if (response.header("transfer-encoding") or "").lower() == "chunked":
            wire, parts = [], []
            while True:
                size_line = await self._read(self.reader.readuntil(b"\r\n"))
                size = int(size_line.split(b";")[0], 16)
                data = await self.read_exactly(size + 2)
                assert data.endswith(b"\r\n"), data[-10:]
                wire += [size_line, data]
                parts.append(data[:-2])
                if size == 0:
                    break
            response.body, response.wire = b"".join(parts), b"".join(wire)
        elif (length := response.header("content-length")) is not None:
            response.body = response.wire = await self.read_exactly(int(length))
        else:  # close-delimited
            response.body = response.wire = await self._read(self.reader.read())
        return response

    async def closed_by_server(self) -> bool:
        """Whether the server closed the connection (EOF or reset) with nothing more sent; waits for
        it (an open connection fails the read's timeout)."""
        try:
            rest = await self._read(self.reader.read())
        except ConnectionResetError:
            return True
        assert rest == b"", rest[:200]
        return True

    def close(self) -> None:
        self.writer.close()


def request(method: str, path: str, *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    """The bytes of one request: ``headers`` as ``"Name: value"``, ``Host`` first (HTTP/1.1 needs one)."""
    lines = [f"{method} {path} HTTP/{version}", "Host: test", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
