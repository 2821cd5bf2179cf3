"""The HTTP module's test harness: an engine with ``iii-http`` on a free port, SDK workers, a client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

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
