"""Handler adaptation: sync/async detection, the ``metadata`` parameter, Pydantic-style formats (§10.4)."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from pyiii.sdk.handlers import FunctionHandler, derive_formats, jsonable


class FakeModel:
    """Quacks like a Pydantic v2 model: enough for format derivation, validation and dumping."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        return {"title": cls.__name__, "type": "object"}

    @classmethod
    def model_validate(cls, data: dict[str, Any]) -> FakeModel:
        return cls(**data)

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return dict(self.fields)


class Reply(FakeModel):
    pass


def test_plain_sync_handler_gets_data_only() -> None:
    """handler(data): called with the payload alone, run in the pool (not async)."""
    handler = FunctionHandler(lambda data: data)
    assert not handler.is_async and not handler.wants_metadata and handler.plain
    assert handler.call({"a": 1}, {"m": 1}) == {"a": 1}


def test_metadata_goes_only_to_a_parameter_named_metadata() -> None:
    """handler(data, metadata) receives the call's metadata; other second parameters do not."""

    def with_meta(data: Any, metadata: Any = None) -> Any:
        return (data, metadata)

    def other_name(data: Any, meta: Any = "unset") -> Any:
        return (data, meta)

    def keyword_only(data: Any, *, metadata: Any) -> Any:
        return (data, metadata)

    assert FunctionHandler(with_meta).call(1, {"k": 2}) == (1, {"k": 2})
    assert FunctionHandler(other_name).call(1, {"k": 2}) == (1, "unset")
    assert FunctionHandler(keyword_only).call(1, {"k": 2}) == (1, {"k": 2})


def test_kwargs_do_not_count_as_metadata() -> None:
    """A **kwargs catch-all does not receive metadata (only a parameter literally named so)."""

    def catch_all(data: Any, **metadata: Any) -> Any:
        return (data, metadata)

    assert FunctionHandler(catch_all).call(1, {"k": 2}) == (1, {})


async def test_async_detection() -> None:
    """Coroutine functions, partials of them and objects with an async __call__ are async handlers."""

    async def coro(data: Any) -> Any:
        return data

    class Callable_:
        async def __call__(self, data: Any) -> Any:
            return data

    assert FunctionHandler(coro).is_async
    assert FunctionHandler(functools.partial(coro)).is_async
    assert FunctionHandler(Callable_()).is_async
    assert await FunctionHandler(coro).call(5, None) == 5


def test_zero_argument_handler_is_called_without_data() -> None:
    """A handler that takes no parameters is called with none."""
    assert FunctionHandler(lambda: "pong").call({"ignored": True}, None) == "pong"


def test_builtin_without_signature_gets_data() -> None:
    """Callables without an inspectable signature are called with the payload."""
    handler = FunctionHandler(dict)
    assert handler.call({"a": 1}, None) == {"a": 1}


def test_non_callable_is_rejected() -> None:
    """Registering something that is not callable raises TypeError."""
    with pytest.raises(TypeError):
        FunctionHandler("not a function")  # type: ignore[arg-type]


def test_formats_derive_from_model_hints() -> None:
    """A model-typed input and return give request/response JSON Schemas; the input is validated."""

    def create(data: FakeModel) -> Reply:
        return Reply(id=data.fields["id"])

    request, response = derive_formats(create)
    assert request == {"title": "FakeModel", "type": "object"}
    assert response == {"title": "Reply", "type": "object"}
    result = FunctionHandler(create).call({"id": 7}, None)
    assert jsonable(result) == {"id": 7}


def test_no_formats_without_model_hints() -> None:
    """Plain annotations derive nothing."""

    def plain(data: dict[str, Any]) -> dict[str, Any]:
        return data

    assert derive_formats(plain) == (None, None)
    assert derive_formats(lambda data: data) == (None, None)


def test_jsonable_passes_plain_values_through() -> None:
    """Only model-like values are dumped; classes and plain values are untouched."""
    value = {"a": [1, 2]}
    assert jsonable(value) is value
    assert jsonable(FakeModel) is FakeModel
    assert jsonable(None) is None
