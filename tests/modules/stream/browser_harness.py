"""Pieces of the browser tests: the page's static site, a cuttable TCP proxy, the Chromium launcher.

* :class:`StaticSite`: a tiny aiohttp app on a free port serving ``/pyiii-stream.js`` (read from the
  installed package, as an app would serve it) and ``/index.html`` (``browser_page.html``).
* :class:`TcpProxy`: forwards a free port to the stream listener. ``drop()`` aborts every connection
  (the browser sees a dead socket, the engine a vanished client); ``go_down()`` also aborts every
  new connection at once until ``come_back()``: a listener restart as the client sees it, without
  giving the port away.
* :func:`launch_chromium`: Debian's ``/usr/bin/chromium`` (``scripts/ensure-chromium``, run by
  ``make setup``) driven by Playwright; Playwright never downloads a browser here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

CHROMIUM = "/usr/bin/chromium"
PAGE = Path(__file__).with_name("browser_page.html")


def client_script() -> bytes:
    """The browser client exactly as the installed package ships it."""
    return resources.files("pyiii").joinpath("static/pyiii-stream.js").read_bytes()


class StaticSite:
    """Serves the client module and the test page on ``http://127.0.0.1:<free port>``."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> StaticSite:
        script, page = client_script(), PAGE.read_bytes()

        async def serve_script(_request: web.Request) -> web.Response:
            # ES modules must come with a JavaScript MIME type or the browser refuses them.
            return web.Response(body=script, content_type="text/javascript", charset="utf-8")

        async def serve_page(_request: web.Request) -> web.Response:
            return web.Response(body=page, content_type="text/html", charset="utf-8")

        app = web.Application()
        app.router.add_get("/pyiii-stream.js", serve_script)
        app.router.add_get("/index.html", serve_page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def page_url(self, ws: str, subs: list[dict[str, Any]], **options: Any) -> str:
        """The page subscribed to ``subs`` on ``ws``, with ``StreamClient`` ``options``."""
        query = {"ws": ws, "subs": json.dumps(subs), "opts": json.dumps(options)}
        return f"{self.url}/index.html?{urlencode(query)}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class TcpProxy:
    """``127.0.0.1:<port>`` -> ``upstream``, byte for byte, with ways to cut the line."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.accepted = 0
        self.down = False
        self.refused = 0
        self._refused_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def ws_url(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.down:
            writer.transport.abort()
            self.refused += 1
            for n, waiter in self._refused_waiters:
                if self.refused >= n and not waiter.done():
                    waiter.set_result(None)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        with contextlib.suppress(Exception):
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)
        for pump in pumps:
            pump.cancel()
            self._tasks.discard(pump)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    def drop(self) -> None:
        """Abort every open connection, both sides: no close frames, just a dead TCP connection."""
        for writer in list(self._writers):
            writer.transport.abort()

    def go_down(self) -> None:
        """Drop the open connections and abort every new one until :meth:`come_back`."""
        self.down = True
        self.drop()

    async def wait_refused(self, count: int) -> None:
        """Until ``count`` connection attempts have been aborted while down (the client's retries)."""
        if self.refused >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._refused_waiters.append((count, waiter))
        await waiter

    def come_back(self) -> None:
        self.down = False

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.drop()
        for task in list(self._tasks):
            task.cancel()


@contextlib.asynccontextmanager
async def launch_chromium() -> Any:
    """A headless Chromium (the system one) for the duration of the block; yields the Browser."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            await browser.close()
