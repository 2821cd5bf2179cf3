"""Adapting user handlers (spec/protocol.md §10.4): sync or async, ``handler(data)`` or
``handler(data, metadata)``, with request/response formats derived from Pydantic-style type hints.

Signature inspection happens once, at registration; each call then costs one attribute check.
Pydantic is not a dependency: models are recognised by duck typing (``model_json_schema``,
``model_validate``, ``model_dump``), so this works with Pydantic v2 when it is installed.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FunctionHandler", "derive_formats", "jsonable"]


class FunctionHandler:
    """A registered handler, ready to call as ``call(data, metadata)``.

    ``is_async`` handlers run as tasks on the client's loop; the others run in its thread pool.
    ``metadata`` is passed only to a parameter literally named ``metadata`` (§10.4).
    """

    __slots__ = ("fn", "input_model", "is_async", "plain", "takes_data", "wants_metadata")

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise TypeError(f"handler must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.is_async = _is_async_callable(fn)
        self.wants_metadata = False
        self.takes_data = True
        params: Mapping[str, inspect.Parameter] | None
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):  # some builtins have no signature: call with data only
            params = None
        if params is not None:
            meta = params.get("metadata")
            self.wants_metadata = meta is not None and meta.kind not in (
                inspect.Parameter.VAR_POSITIONAL,
                inspect.Parameter.VAR_KEYWORD,
            )
            self.takes_data = any(
                p.kind
                in (
                    inspect.Parameter.POSITIONAL_ONLY,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    inspect.Parameter.VAR_POSITIONAL,
                )
                and p.name != "metadata"
                for p in params.values()
            )
        self.input_model = _input_model(fn)
        #: ``fn(data)`` is the whole call: no metadata, no model to validate.
        self.plain = self.takes_data and not self.wants_metadata and self.input_model is None

    def call(self, data: Any, metadata: Any) -> Any:
        """Call the handler; returns its result (a coroutine for async handlers)."""
        if self.input_model is not None and isinstance(data, dict):
            data = self.input_model.model_validate(data)
        if not self.takes_data:
            return self.fn(metadata=metadata) if self.wants_metadata else self.fn()
        if self.wants_metadata:
            return self.fn(data, metadata=metadata)
        return self.fn(data)


def _is_async_callable(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an instance with an async __call__
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    target = fn
    while isinstance(target, functools.partial):
        target = target.func
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(target, "__call__", target)  # noqa: B004
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: no formats
        return {}


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and hasattr(annotation, "model_json_schema")


def _input_model(fn: Callable[..., Any]) -> Any:
    hints = _hints(fn)
    try:
        params = [p for p in inspect.signature(fn).parameters.values() if p.name != "metadata"]
    except (TypeError, ValueError):
        return None
    if not params:
        return None
    annotation = hints.get(params[0].name)
    return annotation if _is_model(annotation) and hasattr(annotation, "model_validate") else None


def derive_formats(fn: Callable[..., Any]) -> tuple[Any, Any]:
    """``(request_format, response_format)`` JSON Schemas from Pydantic-model type hints, else ``None``."""
    hints = _hints(fn)
    request = None
    model = _input_model(fn)
    if model is not None:
        request = model.model_json_schema()
    ret: Any = hints.get("return")
    response = ret.model_json_schema() if _is_model(ret) else None
    return request, response


def jsonable(value: Any) -> Any:
    """A handler result as JSON-able values: Pydantic-style models are dumped, the rest passes through."""
    dump = getattr(value, "model_dump", None)
    if dump is None or isinstance(value, type):
        return value
    try:
        return dump(mode="json")
    except TypeError:
        return dump()
