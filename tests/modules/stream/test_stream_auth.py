"""The listener's ``auth_function`` (spec/stream.md §3.3, S3; checklist items 4, 7, 8, 9)."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from stream_harness import StreamHarness, frame_of, join, leave

from helpers import NO_REPLY, RawWorker
from module_helpers import Recorder, watch
from pyiii import InitOptions, register_worker
from pyiii.modules.stream.auth import auth_headers, format_addr, interpret, query_params
from pyiii.modules.stream.limits import StreamLimits

AUTH = "test::auth"


def upgrade_headers(**extra: str) -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **extra,
    }


async def authed(
    make_stream: Callable[..., StreamHarness], behaviour: Callable[[Any], Any]
) -> tuple[StreamHarness, Recorder]:
    """An engine whose ``auth_function`` is served by ``behaviour`` (0.5 s auth timeout)."""
    harness = await make_stream("memory", limits=StreamLimits(auth_timeout_s=0.5)).start(auth_function=AUTH)
    worker = register_worker(harness.engine, InitOptions(worker_name="auth"))
    recorder = Recorder(behaviour)
    worker.register_function(AUTH, recorder)
    return harness, recorder


async def test_auth_input(make_stream: Callable[..., StreamHarness]) -> None:
    """Checklist 7 and 4: lower-case ``headers`` (full ``sec-websocket-protocol``), ``path`` as requested,
    ``query_params`` as arrays of undecoded values, ``addr`` as ``ip:port``."""
    harness, recorder = await authed(make_stream, lambda data: None)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            harness.url + "/stream/orders/group%20a?a=1&a=2&t=a%20b&e&&=x&p=+",
            headers={"Authorization": "Bearer abc", "X-Custom": "v"},
            protocols=("Authorization", "tok123"),
        )
        assert ws.protocol == "Authorization"
        await ws.close()
    (data,) = recorder.events
    assert data["path"] == "/stream/orders/group%20a"
    assert data["query_params"] == {"a": ["1", "2"], "t": ["a%20b"], "e": [""], "p": ["+"]}
    headers = data["headers"]
    assert headers["authorization"] == "Bearer abc" and headers["x-custom"] == "v"
    assert headers["sec-websocket-protocol"] == "Authorization,tok123"  # as aiohttp sends the offer
    assert "sec-websocket-key" in headers and all(name == name.lower() for name in headers)
    host, port = data["addr"].rsplit(":", 1)
    assert host == "127.0.0.1" and port.isdigit()
    assert recorder.metadata == [None]


def test_auth_input_rules() -> None:
    """§3.3: non-printable header values are omitted, a repeated name keeps its last value; IPv6 addresses
    are bracketed; no query gives ``{}``."""
    assert auth_headers([("A", "1"), ("a", "2"), ("B", "bad\x01"), ("C", "tab\tok"), ("D", "é")]) == {
        "a": "2",
        "c": "tab\tok",
    }
    assert query_params("") == {}
    assert query_params("x=1=2&&y") == {"x": ["1=2"], "y": [""]}
    assert format_addr(("::1", 5000, 0, 0)) == "[::1]:5000"
    assert format_addr(("10.0.0.1", 1)) == "10.0.0.1:1"


@pytest.mark.parametrize(
    ("result", "rejected", "context"),
    [
        (None, False, None),
        (True, False, None),
        ({"context": {"user": "alice"}}, False, {"user": "alice"}),
        ({"other": 1}, False, None),
        ({"unauthorized": False, "context": 1}, False, 1),
        (False, True, None),
        ({"unauthorized": True, "context": 1}, True, None),
        ("x", True, None),
        (5, True, None),
        ([1], True, None),
    ],
)
def test_auth_outcomes(result: Any, rejected: bool, context: Any) -> None:
    """§3.3 outcome table, fail closed (S3)."""
    verdict = interpret(result)
    assert verdict.rejected is rejected
    if not rejected:
        assert verdict.context == context


async def test_context_reaches_join_and_leave(make_stream: Callable[..., StreamHarness]) -> None:
    """Checklist 8: ``{"context":{"user":"alice"}}`` upgrades; the context reaches join and leave payloads."""
    harness, _ = await authed(make_stream, lambda data: {"context": {"user": "alice"}})
    worker = register_worker(harness.engine, InitOptions(worker_name="lifecycle"))
    joins, _ = watch(worker, "stream:join", {})
    leaves, _ = watch(worker, "stream:leave", {})
    client = await harness.client("/stream/s/g")
    await client.expect(frame_of("sync"))
    await client.send(leave("url", "s", "g"))
    await client.barrier()
    assert joins.events[0]["context"] == {"user": "alice"}
    assert leaves.events[0]["context"] == {"user": "alice"}
    await worker.shutdown_async()


async def test_null_auth_and_no_auth_are_anonymous(make_stream: Callable[..., StreamHarness]) -> None:
    """Checklist 8: auth ``null`` upgrades with ``context: null``; no ``auth_function``: everyone upgrades."""
    for harness in (
        (await authed(make_stream, lambda data: None))[0],
        await make_stream("memory").start(),
    ):
        worker = register_worker(harness.engine, InitOptions(worker_name="lifecycle"))
        joins, _ = watch(worker, "stream:join", {})
        client = await harness.client()
        await client.send(join("a", "s", "g"))
        await client.expect(frame_of("sync"))
        assert joins.events[0]["context"] is None
        await worker.shutdown_async()


async def expect_401(harness: StreamHarness) -> None:
    url = harness.url.replace("ws://", "http://") + "/stream/s/g"
    async with aiohttp.ClientSession() as session, session.get(url, headers=upgrade_headers()) as response:
        assert response.status == 401
        assert response.headers["Content-Type"].startswith("application/json")
        assert await response.read() == b'{"error":{"code":"UNAUTHORIZED","message":"Unauthorized"}}'
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await RawWorker.connect(harness.url, hello=False)
    assert info.value.status == 401


def _raise(data: Any) -> Any:
    raise RuntimeError("auth broke")


async def _hang(data: Any) -> Any:
    await asyncio.Event().wait()


@pytest.mark.parametrize(
    "behaviour",
    [
        lambda data: False,
        lambda data: {"unauthorized": True},
        lambda data: "x",
        _raise,
        _hang,
    ],
    ids=["false", "unauthorized", "string", "raises", "hangs"],
)
async def test_rejections_give_401(make_stream: Callable[..., StreamHarness], behaviour: Any) -> None:
    """Checklist 9 (S3): ``false``, ``{"unauthorized":true}``, ``"x"``, a raising handler and no answer within
    the timeout each give 401 with the ``UNAUTHORIZED`` body and no upgrade."""
    harness, recorder = await authed(make_stream, behaviour)
    await expect_401(harness)
    assert len(recorder.events) == 2
    assert harness.stream.hub.connections == {}


async def test_unregistered_auth_function_gives_401(make_stream: Callable[..., StreamHarness]) -> None:
    """Checklist 9: an ``auth_function`` that is not registered gives 401."""
    harness = await make_stream("memory").start(auth_function="test::nobody")
    await expect_401(harness)


async def test_worker_that_never_answers_gives_401(make_stream: Callable[..., StreamHarness]) -> None:
    """Checklist 9: a remote worker that never answers the auth call: 401 after the auth timeout."""
    harness = await make_stream("memory", limits=StreamLimits(auth_timeout_s=0.3)).start(auth_function=AUTH)
    assert harness.server is not None
    worker = await RawWorker.connect(harness.server.url)
    try:
        await worker.register("silent")
        await worker.serve(AUTH, lambda frame: NO_REPLY)
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await RawWorker.connect(harness.url, hello=False)
        assert info.value.status == 401
    finally:
        await worker.close()


async def test_plain_get_never_reaches_the_auth_function(make_stream: Callable[..., StreamHarness]) -> None:
    """§3.2 rule 1: a request that is not a valid upgrade is refused before the auth function runs."""
    harness, recorder = await authed(make_stream, lambda data: None)
    url = harness.url.replace("ws://", "http://") + "/"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 426
    assert recorder.events == []
