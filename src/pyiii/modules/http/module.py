"""The ``iii-http`` module: the ``http`` trigger type and its listener (spec/http.md).

Registration (§4-§6) lives here; the request pipeline (§3) is :mod:`.server`, the route tables
:mod:`.routing`, the request object :mod:`.request`, responses :mod:`.response`, CORS :mod:`.cors`.

Ownership (§6.4) is by identity: each binding keeps the :class:`Route` it installed in
``binding.state``, and unregistering removes that route only while it is still the installed one for
its key. A newer registration of the same key (another worker, or the same worker reconnected) has a
route object of its own, so a stale connection's cleanup can never remove it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from pyiii.config import HttpSettings
from pyiii.engine.channels import ChannelRegistry
from pyiii.engine.modules import Module, ModuleHost
from pyiii.engine.registry import Binding
from pyiii.protocol.errors import TriggerRegistrationError

if TYPE_CHECKING:
    from .h1 import H1Listener

from .routing import SUPPORTED_METHODS, InvalidPath, Route, RouteConflict, Router, parse_template

log = logging.getLogger("pyiii.http")

MODULE_NAME: Final = "iii-http"
TRIGGER_TYPE: Final = "http"
API_PATH_REQUIRED: Final = "api_path is required for http triggers"


def route_for(binding: Binding) -> Route:
    """Validate a binding's config (§4, §5) into a route; raises ``TriggerRegistrationError``."""
    config = binding.config if isinstance(binding.config, dict) else {}
    api_path = config.get("api_path")
    if not isinstance(api_path, str):
        raise TriggerRegistrationError(API_PATH_REQUIRED)
    method = config.get("http_method")
    method = method.upper() if isinstance(method, str) else "GET"
    condition = config.get("condition_function_id")
    middleware = config.get("middleware_function_ids")
    try:
        template = parse_template(api_path)
    except InvalidPath as exc:
        raise TriggerRegistrationError(str(exc)) from None
    return Route(
        method=method,
        template=template,
        trigger_id=binding.id,
        owner=binding.owner,
        binding=binding,
        condition_function_id=condition if isinstance(condition, str) and condition else None,
        middleware_function_ids=tuple(m for m in middleware if isinstance(m, str))
        if isinstance(middleware, list)
        else (),
    )


class HttpModule(Module):
    """Serves REST routes whose handlers are worker functions. ``address`` is set once bound."""

    name = MODULE_NAME

    def __init__(self, settings: HttpSettings, channels: ChannelRegistry | None = None) -> None:
        self.settings = settings
        self.channels = channels if channels is not None else ChannelRegistry()
        self.router = Router()
        self.address: tuple[str, int] | None = None
        self._listener: H1Listener | None = None
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: ModuleHost) -> None:
        from .h1 import H1Listener
        from .server import HttpServer

        host.register_trigger_type(TRIGGER_TYPE, self, description="HTTP API trigger")
        app = HttpServer(host.engine, self.router, self.channels, self.settings)
        # A client that goes away ends its request, and its channels (§8.5 rule 3): see h1.Connection.
        listener = H1Listener(app.handle, app.refusal)
        settings = self.settings
        port = await listener.start(settings.host, settings.port)
        self._listener = listener
        self.address = (self.settings.host, port)
        log.info("API listening on address: %s:%s", self.settings.host, port)

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.shutdown(1.0)

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound listener."""
        if self.address is None:
            raise RuntimeError("the HTTP module is not started")
        host, port = self.address
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------ the `http` trigger type

    def register_trigger(self, binding: Binding) -> None:
        route = route_for(binding)
        if route.method not in SUPPORTED_METHODS:
            log.warning(
                "http trigger %s: method %s is not supported; the route never matches",
                binding.id,
                route.method,
            )
        try:
            replaced = self.router.add(route)
        except RouteConflict as exc:
            raise TriggerRegistrationError(str(exc)) from None
        if replaced is not None and replaced is not route:
            log.info("route %s replaced (trigger %s → %s)", route.key, replaced.trigger_id, binding.id)
        binding.state = route
        self._changed()

    def unregister_trigger(self, binding: Binding) -> None:
        route = binding.state
        if isinstance(route, Route) and self.router.remove(route):
            self._changed()

    # ------------------------------------------------------------------ waiting for routes (tests, tools)

    def has_route(self, method: str, api_path: str, function_id: str | None = None) -> bool:
        template = parse_template(api_path)
        route = self.router.by_key.get(f"{method.upper()}:{template.key_path}")
        return route is not None and (function_id is None or route.binding.function_id == function_id)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` holds; it is checked after every route table change."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            await future
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]

    async def wait_for_route(self, method: str, api_path: str, function_id: str | None = None) -> None:
        await self.wait_for(lambda: self.has_route(method, api_path, function_id))

    async def wait_for_no_route(self, method: str, api_path: str) -> None:
        await self.wait_for(lambda: not self.has_route(method, api_path))

    def _changed(self) -> None:
        for predicate, future in self._waiters:
            if not future.done() and predicate():
                future.set_result(None)
