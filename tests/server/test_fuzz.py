"""Fuzzing a live engine over one socket (STYLE habit 7, spec/protocol.md §2.4 rule 2, §3.1 rule 2).

Random bytes, random text, random JSON and mutations of valid frames (wrong field types, missing
fields, unknown types, huge strings, binary frames, invalid UTF-8 in text frames) go to a live engine
over one socket. After every example the fuzzing socket must still be open and answering, and a
normal worker on another socket must still register and get correct results.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import RawWorker

# -- strategies ------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

TYPES = [
    "registerfunction",
    "unregisterfunction",
    "registertriggertype",
    "unregistertriggertype",
    "registertrigger",
    "unregistertrigger",
    "triggerregistrationresult",
    "invokefunction",
    "invocationresult",
    "reattach",
    "ping",
    "registerservice",
    "observe",
    "functionregistered",
    "workerregistered",
]

#: Valid frames of every worker -> engine message type (the fuzz ids stay in a ``fuzz::`` space).
VALID_FRAMES: list[dict[str, Any]] = [
    {"type": "registerfunction", "id": "fuzz::fn", "description": "d", "metadata": {"m": 1}},
    {"type": "unregisterfunction", "id": "fuzz::fn"},
    {"type": "registertriggertype", "id": "fuzztype", "description": "d"},
    {"type": "unregistertriggertype", "id": "fuzztype"},
    {
        "type": "registertrigger",
        "id": "fb",
        "trigger_type": "fuzztype",
        "function_id": "fuzz::fn",
        "config": {},
    },
    {
        "type": "registertrigger",
        "id": "fb2",
        "trigger_type": "engine::workers-available",
        "function_id": "fuzz::fn",
    },
    {"type": "unregistertrigger", "id": "fb", "trigger_type": "fuzztype"},
    {"type": "triggerregistrationresult", "id": "fb", "trigger_type": "fuzztype", "function_id": "fuzz::fn"},
    {"type": "invokefunction", "function_id": "fuzz::fn", "invocation_id": "fi", "data": {"a": 1}},
    {"type": "invokefunction", "function_id": "engine::functions::list", "invocation_id": "fl", "data": {}},
    {
        "type": "invokefunction",
        "function_id": "engine::workers::register",
        "data": {"name": "fuzzer", "pid": 1},
    },
    {"type": "invokefunction", "function_id": "fuzz::fn", "data": 1, "action": {"type": "void"}},
    {"type": "invokefunction", "function_id": "fuzz::fn", "action": {"type": "enqueue", "queue": "q"}},
    {"type": "invocationresult", "invocation_id": "fi", "function_id": "fuzz::fn", "result": 1},
    {"type": "reattach", "previous_worker_id": "fuzz-worker", "reattach_token": "t"},
    {"type": "ping"},
    {"type": "registerservice", "id": "svc", "name": "svc"},
]


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid frame (as JSON bytes) with a few fields dropped, retyped, added, made huge or deeply
    nested, given invalid UTF-8 inside a string, or with its type changed."""
    frame = dict(draw(st.sampled_from(VALID_FRAMES)))
    nested: dict[str, bytes] = {}
    for _ in range(draw(st.integers(1, 3))):
        keys = sorted(frame)
        op = draw(st.sampled_from(["drop", "retype", "add", "type", "huge", "nest", "utf8"]))
        if op == "drop" and keys:
            frame.pop(draw(st.sampled_from(keys)))
        elif op == "retype" and keys:
            frame[draw(st.sampled_from(keys))] = draw(json_values)
        elif op == "add":
            frame[draw(st.text(max_size=12))] = draw(json_values)
        elif op == "type":
            frame["type"] = draw(st.sampled_from(TYPES) | st.text(max_size=12) | json_scalars)
        elif op == "huge" and keys:
            size = draw(st.sampled_from([70_000, 300_000, 1_100_000]))
            frame[draw(st.sampled_from(keys))] = "h" * size
        elif op == "nest" and keys:
            depth = draw(st.integers(50, 5000))
            placeholder = f"__nested_{len(nested)}__"
            nested[json.dumps(placeholder)] = b"[" * depth + b"]" * depth
            frame[draw(st.sampled_from(keys))] = placeholder
        elif op == "utf8" and keys:
            placeholder = f"__bytes_{len(nested)}__"
            bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80abc"]))
            nested[json.dumps(placeholder)] = b'"' + bad + b'"'
            frame[draw(st.sampled_from(keys))] = {"s": placeholder}
    text = as_text(frame).encode()
    for placeholder, value in nested.items():
        text = text.replace(placeholder.encode(), value)
    return text


@st.composite
def relayed_calls(draw: st.DrawFn) -> bytes:
    """A call to ``fuzz::fn`` (served by the relay target) whose payload fields are fuzzed, sometimes
    with invalid UTF-8 inside a string: what the engine relays to another worker."""
    frame: dict[str, Any] = {"type": "invokefunction", "function_id": "fuzz::fn"}
    if draw(st.booleans()):
        frame["invocation_id"] = draw(st.text(max_size=8) | json_scalars)
    fields = draw(
        st.lists(st.sampled_from(["data", "metadata", "traceparent", "baggage", "action"]), max_size=3)
    )
    for name in fields:
        frame[name] = "__bad__" if draw(st.integers(0, 3)) == 0 else draw(json_values)
    text = as_text(frame).encode()
    bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"ok\x80"]))
    return text.replace(b"__bad__", bad)


@st.composite
def random_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object with a known or unknown type and random fields named like protocol fields."""
    names = st.sampled_from(
        ["id", "function_id", "invocation_id", "data", "config", "metadata", "namespace", "action",
         "trigger_type", "error", "result", "previous_worker_id", "reattach_token", "description"]
    )  # fmt: skip
    frame = draw(st.dictionaries(names | st.text(max_size=8), json_values, max_size=6))
    frame["type"] = draw(st.sampled_from(TYPES) | st.text(max_size=10))
    return frame


Frame = tuple[str, Any]  # ("text", str) | ("binary", bytes) | ("raw-text", bytes): a text frame as bytes

frames = st.one_of(
    st.binary(max_size=300).map(lambda b: ("binary", b)),
    st.binary(max_size=300).map(lambda b: ("raw-text", b)),  # a text frame that may not be UTF-8
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=300).map(lambda t: ("text", t)),
    json_values.map(lambda v: ("text", as_text(v))),
    random_objects().map(lambda v: ("text", as_text(v))),
    mutated_frames().map(lambda v: ("raw-text", v)),
    relayed_calls().map(lambda v: ("raw-text", v)),
    relayed_calls().map(lambda v: ("binary", v)),
    mutated_frames().map(lambda v: ("binary", v)),
    st.sampled_from(VALID_FRAMES).map(lambda v: ("text", as_text(v))),
)


# -- the live engine -------------------------------------------------------------------------


@pytest.fixture
async def fuzzer(engine_url: str) -> AsyncIterator[RawWorker]:
    """The fuzzing socket."""
    worker = await RawWorker.connect(engine_url)
    try:
        yield worker
    finally:
        await worker.close()


@pytest.fixture
async def relay_target(engine_url: str) -> AsyncIterator[RawWorker]:
    """A well-behaved owner of ``fuzz::fn``: the fuzzed calls to it are relayed here, so every frame
    the engine builds from fuzzed input reaches a real socket (whose reader parses each one)."""
    worker = await RawWorker.connect(engine_url)
    try:
        await worker.register("relay-target", runtime="node", features=None)
        await worker.serve("fuzz::fn")
        await worker.send({"type": "registertriggertype", "id": "fuzztype", "description": "d"})
        yield worker
    finally:
        await worker.close()


async def send_frame(worker: RawWorker, frame: Frame) -> None:
    kind, payload = frame
    if kind == "binary":
        await worker.ws.send_bytes(payload)
    elif kind == "raw-text":
        await worker.ws.send_frame(payload, WSMsgType.TEXT)
    else:
        await worker.ws.send_str(payload)


async def assert_engine_healthy(engine_url: str, fuzzer: RawWorker, relay_target: RawWorker) -> None:
    """The fuzzing socket still answers in order; the relay target is still open and was sent only
    well-formed frames; a fresh worker registers and gets correct results."""
    await relay_target.barrier()
    assert not relay_target.closed.is_set()
    assert all(isinstance(f.get("type"), str) for f in relay_target.history)
    relay_target.inbox.clear()
    marker = f"alive-{uuid.uuid4()}"
    await fuzzer.send(
        {
            "type": "invokefunction",
            "function_id": "engine::channels::create",
            "invocation_id": marker,
            "data": {},
        }
    )
    reply = await fuzzer.expect({"invocation_id": marker})
    assert "error" not in reply or reply["error"]["code"] == "payload_too_large", reply
    assert not fuzzer.closed.is_set()
    fuzzer.inbox.clear()
    function_id = f"good::{uuid.uuid4()}"
    good = await RawWorker.connect(engine_url)
    caller = await RawWorker.connect(engine_url)
    try:
        await good.register(f"good-{uuid.uuid4()}")
        await good.serve(function_id, lambda f: {"echo": f["data"], "meta": f.get("metadata")})
        for value in ({"x": [1, "two", None]}, "text", 3.5):
            result = await caller.call(function_id, value, metadata={"k": "v"})
            assert result.get("result") == {"echo": value, "meta": {"k": "v"}}, result
    finally:
        await good.close()
        await caller.close()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=st.lists(frames, min_size=1, max_size=8))
async def test_fuzzed_frames_never_break_the_engine(
    engine_url: str, fuzzer: RawWorker, relay_target: RawWorker, batch: list[Frame]
) -> None:
    """Fuzzed frames on one socket leave it open and the engine serving other workers (STYLE habit 7)."""
    for frame in batch:
        await send_frame(fuzzer, frame)
    await assert_engine_healthy(engine_url, fuzzer, relay_target)


async def test_every_valid_frame_once(engine_url: str, fuzzer: RawWorker, relay_target: RawWorker) -> None:
    """Each valid frame of every type, sent twice as text and as binary, is handled without harm."""
    for frame in VALID_FRAMES:
        await send_frame(fuzzer, ("text", as_text(frame)))
        await send_frame(fuzzer, ("binary", as_text(frame).encode()))
    await assert_engine_healthy(engine_url, fuzzer, relay_target)
