"""Hypothesis-generated client messages: the decoder never raises, and a live listener fed random frames
keeps every connection open and keeps serving normal clients (spec/stream.md §3.4 step 5, STYLE habit 7)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyiii.config import StreamSettings
from pyiii.modules.stream import frames
from pyiii.testing import start_server

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "subscriptionId": json_values | st.text(max_size=5),
        "streamName": json_values | st.sampled_from(["s", "", "a:b"]),
        "groupId": json_values | st.sampled_from(["g", ""]),
        "id": json_values,
    },
)
messages = st.one_of(
    st.builds(
        lambda t, d: {"type": t, "data": d}, st.sampled_from(["join", "leave", "ping", "JOIN", "x"]), fields
    ),
    st.builds(lambda t, d: {"type": t, "data": d}, json_values, json_values),
    json_values,
)
raw_frames = st.one_of(
    messages.map(lambda m: json.dumps(m)),
    st.text(max_size=50),
    st.binary(max_size=50),
    messages.map(lambda m: json.dumps(m).encode()),
)

DOCUMENTED = (frames.Join, frames.Leave, frames.Ping, frames.Ignored)


@given(raw_frames)
@settings(max_examples=400, deadline=None)
def test_decoder_outcomes_are_documented(raw: str | bytes) -> None:
    """§3.5: any text or bytes decodes to a join, a leave, a ping or an ignored message; nothing raises."""
    message = frames.parse_client_message(raw)
    assert isinstance(message, DOCUMENTED)
    if isinstance(message, frames.Join | frames.Leave):
        assert all(
            isinstance(v, str) for v in (message.subscription_id, message.stream_name, message.group_id)
        )
        assert message.item_id is None or isinstance(message.item_id, str)


class Background:
    """An engine with the stream module on its own event loop thread (hypothesis drives it synchronously)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.run(start_server(stream=StreamSettings(port=0)))
        self.url = self.server.stream.url

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def feed(self, batch: list[str | bytes]) -> list[Any]:
        """Send ``batch`` on a fresh socket, then a JSON ping; return the frames received up to the pong."""
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url + "/") as ws:
            for raw in batch:
                if isinstance(raw, bytes):
                    await ws.send_bytes(raw)
                else:
                    await ws.send_str(raw)
            await ws.send_str('{"type":"ping"}')
            received = []
            pongs_due = _pings(batch) + 1  # every fuzzed ping is answered too, in order
            while pongs_due:
                msg = await ws.receive(timeout=10)
                assert msg.type is WSMsgType.TEXT, (msg.type, msg.data)
                frame = json.loads(msg.data)
                if frame == {"type": "pong"}:
                    pongs_due -= 1
                received.append(frame)
            return received

    def stop(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _pings(batch: list[str | bytes]) -> int:
    return sum(1 for raw in batch if isinstance(frames.parse_client_message(raw), frames.Ping))


@pytest.fixture(scope="module")
def background() -> Iterator[Background]:
    bg = Background()
    try:
        yield bg
    finally:
        bg.stop()


@given(st.lists(raw_frames, max_size=12))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_frames_keep_the_connection_and_the_listener(background: Background, batch: list[Any]) -> None:
    """§3.4 step 5: random frames on a live socket only produce stream frames and pongs; the socket stays
    open until the final ping is answered."""
    received = background.run(background.feed(batch))
    for frame in received:
        assert frame.get("type") in ("stream", "pong")
        if frame["type"] == "stream":
            assert frame["event"]["type"] in ("sync", "unauthorized")


def test_normal_client_after_fuzzing(background: Background) -> None:
    """After the fuzzing, a normal client still joins, gets its sync and receives a change."""

    async def scenario() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(background.url + "/stream/after/g") as ws,
        ):
            sync = json.loads((await ws.receive(timeout=10)).data)
            assert sync["event"] == {"type": "sync", "data": []}
            await background.server.engine.invoke(
                "stream::set", {"stream_name": "after", "group_id": "g", "item_id": "i", "data": 1}
            )
            created = json.loads((await ws.receive(timeout=10)).data)
            assert created["event"] == {"type": "create", "data": 1}

    background.run(scenario())
