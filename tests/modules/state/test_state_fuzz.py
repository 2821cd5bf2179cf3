"""Bad input is an answer, not a crash (STYLE habit 7): random payloads to every state function get a
result or one of the documented error codes (spec/state.md §3.5), and nothing half-written."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyiii.engine.invocations import CallContext
from pyiii.errors import InvocationError
from pyiii.modules.state.adapters.memory import MemoryAdapter
from pyiii.modules.state.module import StateModule
from pyiii.server.app import EngineServer
from pyiii.testing import make_settings

FUNCTIONS = [
    "state::set",
    "state::get",
    "state::delete",
    "state::update",
    "state::list",
    "state::list_keys",
    "state::list_entries",
    "state::list_groups",
]
DOCUMENTED = {"deserialization_error", "VALUE_TOO_LARGE", "INVALID_PAGE_LIMITS", "INVALID_CURSOR"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
ops = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["set", "merge", "increment", "decrement", "append", "remove", "x"])},
        optional={
            "path": st.one_of(
                st.text(max_size=5), st.lists(st.text(max_size=3), max_size=3), st.none(), st.integers()
            ),
            "value": json_values,
            "by": st.one_of(st.integers(min_value=-(2**64), max_value=2**64), st.floats(), st.booleans()),
        },
    ),
    max_size=4,
)
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "scope": st.one_of(st.sampled_from(["s", ""]), json_values),
            "key": st.one_of(st.sampled_from(["k", ""]), json_values),
            "value": json_values,
            "data": json_values,
            "ops": st.one_of(ops, json_values),
            "cursor": st.one_of(st.none(), st.text(max_size=12)),
            "limit": st.one_of(st.none(), st.integers(min_value=-2, max_value=1002), st.floats()),
        },
    ),
)


async def _start() -> EngineServer:
    server = EngineServer(make_settings())
    module = StateModule(adapter=MemoryAdapter())
    module.live.max_value_bytes = 64
    server.engine.add_module(module)
    await server.start()
    return server


async def _call(server: EngineServer, function_id: str, payload: Any) -> None:
    entry = server.engine.functions.resolve("default", function_id)
    assert entry is not None and entry.builtin is not None
    try:
        await entry.builtin(payload, CallContext(function_id, "default"))
    except InvocationError as exc:
        assert exc.code in DOCUMENTED, (function_id, payload, exc)
        assert exc.message.strip()
    # Whatever is stored reads back.
    for scope in (await server.engine.invoke("state::list_groups", {}))["groups"]:
        await server.engine.invoke("state::list_entries", {"scope": scope})


def test_random_payloads() -> None:
    """Any payload to any state function: a result, or an error with a documented code."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(_start())

    @settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(st.sampled_from(FUNCTIONS), payloads)
    def check(function_id: str, payload: Any) -> None:
        loop.run_until_complete(_call(server, function_id, payload))

    try:
        check()
    finally:
        loop.run_until_complete(server.stop())
        loop.close()
