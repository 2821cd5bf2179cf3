"""The module seam: how a built-in module plugs into the engine.

A module is an object with a ``name`` (its canonical config name, e.g. ``iii-state``) and two
coroutines, ``start(host)`` and ``stop()``. In ``start`` it registers what it provides through the
:class:`ModuleHost` it is given, with the verbs a worker uses (``register_function``,
``register_trigger_type``, ``register_trigger``, ``trigger``), so a module never touches the
engine's registries directly:

    class Greeter(Module):
        name = "greeter"

        async def start(self, host: ModuleHost) -> None:
            async def hello(data, ctx):
                return {"hello": data["name"]}
            host.register_function("greeter::hello", hello, description="Say hello")

Differences from a worker, all deliberate: handlers are ``async (data, ctx)`` coroutines called
in-process (no frame is encoded); a trigger provider validates and installs a binding synchronously
and rejects it by raising ``TriggerRegistrationError``; module functions live in ``default``, are
reserved there and resolve from every namespace (protocol.md §5.1 rule 4, D20).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from pyiii.engine.registry import DEFAULT_NS, Binding, BuiltinHandler, TriggerProvider, TriggerType

if TYPE_CHECKING:
    from pyiii.engine.core import Engine
    from pyiii.engine.peer import Peer


class Module:
    """Base class of built-in modules (subclasses set ``name`` and override ``start``)."""

    name = "module"

    async def start(self, host: ModuleHost) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        return None


class ModuleHost:
    """What a module sees of the engine: the worker verbs, bound to the module's own peer."""

    def __init__(self, engine: Engine, peer: Peer) -> None:
        self.engine = engine
        self.peer = peer

    def register_function(
        self,
        function_id: str,
        handler: BuiltinHandler,
        *,
        description: str | None = None,
        metadata: Any = None,
        request_format: Any = None,
        response_format: Any = None,
        taskless: bool = False,
    ) -> None:
        """By default every call runs as its own task, as a worker's function would.

        ``taskless``: the handler awaits nothing but futures resolved on the loop and never needs a
        task of its own (no ``asyncio.current_task``, no ``asyncio.timeout``, no library that uses
        them, such as redis-py). The engine then starts a call in the caller's context, up to its
        first suspension, and finishes it from the awaited futures' callbacks
        (``pyiii._eager.Resume.drive``): no task per call. A handler that breaks the rule would bind
        its timeouts to the caller's task, or fail outside one."""
        self.engine.register_builtin_function(
            self.peer,
            function_id,
            handler,
            description=description,
            metadata=metadata,
            request_format=request_format,
            response_format=response_format,
            taskless=taskless,
        )

    def register_trigger_type(
        self, type_id: str, provider: TriggerProvider, *, description: str = ""
    ) -> None:
        self.engine.add_trigger_type(
            TriggerType(
                id=type_id,
                namespace=DEFAULT_NS,
                description=description,
                provider_peer=self.peer,
                builtin=provider,
            )
        )

    def register_trigger(
        self, trigger_type: str, function_id: str, config: Any = None, *, metadata: Any = None
    ) -> Binding:
        binding = Binding(
            id=str(uuid.uuid4()),
            trigger_type=trigger_type,
            function_id=function_id,
            config=config,
            metadata=metadata,
            namespace=DEFAULT_NS,
            trigger_namespace=None,
            owner=self.peer,
        )
        self.engine.add_binding(binding)
        return binding

    async def trigger(
        self, function_id: str, payload: Any = None, *, namespace: str = DEFAULT_NS, metadata: Any = None
    ) -> Any:
        """Call a function and wait for its result (raises ``InvocationError``)."""
        return await self.engine.invoke(function_id, payload, namespace=namespace, metadata=metadata)

    def trigger_void(
        self, function_id: str, payload: Any = None, *, namespace: str = DEFAULT_NS, metadata: Any = None
    ) -> None:
        self.engine.invoke_void(function_id, payload, namespace=namespace, metadata=metadata)
