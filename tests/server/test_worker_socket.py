"""The worker socket on the wire (spec/protocol.md §2, §3.2, §6.2, §6.5): raw WebSocket clients only.

Covers the transport rules: the first frame, paths and upgrades, pings, ignored frames, size limits,
auth, keepalive, the 0.11-generation rules (1 MiB limit, eviction by identity, ``registerservice``).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import aiohttp
import pytest

from helpers import MIB, NO_REPLY, TIME_FACTOR, RawWorker, compact, detached
from pyiii.config import WorkerManagerSettings

UUID_FIELDS = ("worker_id", "reattach_token")


def http_url(ws_url: str, path: str) -> str:
    return ws_url.replace("ws://", "http://", 1).rstrip("/") + path


def is_uuid4(value: str) -> bool:
    parsed = uuid.UUID(value)
    return parsed.version == 4 and str(parsed) == value


async def listed_worker_ids(worker: RawWorker) -> set[str]:
    reply = await worker.result("engine::workers::list", {})
    return {row["id"] for row in reply["workers"]}


# --------------------------------------------------------------------------------------------
# §3.2, §2.1: first frame, paths, upgrades, pings (checklist item 1)


async def test_first_frame_is_workerregistered_with_uuids(engine_url: str, connect: Any) -> None:
    """§3.2: the first frame is compact ``workerregistered`` with UUID v4 worker_id and token, no features."""
    worker = await connect(engine_url, hello=False)
    first = await worker.expect(lambda f: True)
    assert first["type"] == "workerregistered"
    assert set(first) == {"type", "worker_id", "reattach_token"}
    assert all(is_uuid4(first[key]) for key in UUID_FIELDS)
    assert first["worker_id"] != first["reattach_token"]
    assert first.raw == compact(dict(first))


async def test_each_connection_gets_fresh_ids(engine_url: str, connect: Any) -> None:
    """§3.2: worker_id and reattach_token are new on every connection."""
    a = await connect(engine_url)
    b = await connect(engine_url)
    assert len({a.worker_id, a.reattach_token, b.worker_id, b.reattach_token}) == 4


@pytest.mark.parametrize("path", ["/nope", "/ws", "/ws/channels", "/otel/x", "/index.html"])
async def test_unknown_paths_get_404(engine_url: str, path: str) -> None:
    """§2.1 rule 2: any other path gets HTTP 404, plain GET or WebSocket upgrade alike."""
    async with aiohttp.ClientSession() as session:
        async with session.get(http_url(engine_url, path)) as response:
            assert response.status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(engine_url + path)
        assert info.value.status == 404


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
async def test_connection_that_does_not_complete_the_upgrade_is_closed(make_server: Any, sent: bytes) -> None:
    """§2.1 rule 3: a connection that has not upgraded within ``handshake_timeout_ms`` is closed."""
    server = await make_server(
        worker_managers=(WorkerManagerSettings(host="127.0.0.1", port=0, handshake_timeout_ms=200),)
    )
    host, port = server.worker_addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(sent)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await asyncio.wait_for(reader.read(), 5 * TIME_FACTOR) == b""  # EOF: the engine closed it
        assert loop.time() - started >= 0.15
    finally:
        writer.close()


async def test_upgraded_socket_outlives_the_handshake_timeout(make_server: Any, connect: Any) -> None:
    """§2.1 rule 3: the handshake timeout does not apply once the socket is upgraded."""
    server = await make_server(
        worker_managers=(WorkerManagerSettings(host="127.0.0.1", port=0, handshake_timeout_ms=100),)
    )
    worker = await connect(server.url)
    await worker.register("patient")
    with pytest.raises(TimeoutError):  # idle for four times the timeout: no close may come
        await asyncio.wait_for(worker.closed.wait(), 0.4)
    await worker.barrier()
    assert server.engine.peers[worker.worker_id].live


@pytest.mark.parametrize("path", ["/", "/otel"])
async def test_plain_get_on_socket_paths_gets_426(engine_url: str, path: str) -> None:
    """§2.1 rule 2: a non-upgrade request on ``/`` or ``/otel`` gets 426."""
    async with aiohttp.ClientSession() as session, session.get(http_url(engine_url, path)) as response:
        assert response.status == 426


async def test_websocket_ping_gets_pong(engine_url: str, connect: Any) -> None:
    """§2.4 rule 6: a WebSocket Ping is answered with a Pong carrying its payload."""
    worker = await connect(engine_url, autoping=False)
    await worker.ws.ping(b"are-you-there")
    assert await asyncio.wait_for(worker.pongs.get(), 5 * TIME_FACTOR) == b"are-you-there"


async def test_json_ping_gets_json_pong(engine_url: str, connect: Any) -> None:
    """§2.4 rule 7: ``{"type":"ping"}`` gets exactly ``{"type":"pong"}``."""
    worker = await connect(engine_url)
    await worker.send({"type": "ping"})
    pong = await worker.expect("pong")
    assert pong.raw == '{"type":"pong"}'


# --------------------------------------------------------------------------------------------
# §2.4 rule 2, §3.1 rule 2: what is ignored (checklist item 2)

IGNORED_FRAMES: list[str | bytes] = [
    "",
    "   ",
    "\n",
    "{",
    "not json at all",
    "null",
    "[1,2,3]",
    '"a string"',
    "{}",
    '{"type":"bogus"}',
    '{"type":"InvokeFunction","function_id":"x"}',
    '{"type":"functionregistered","id":"a::b","local_dispatch":true}',
    '{"type":"observe","id":"o1"}',
    '{"type":"localinvocationstats","stats":[]}',
    '{"type":"registerfunction"}',
    '{"type":"unregistertrigger","id":5}',
    '{"type":"invokefunction","data":1}',
    '{"type":"invocationresult","invocation_id":"nobody","function_id":"f","result":1}',
    '{"type":"triggerregistrationresult","id":"nobody","trigger_type":"t","function_id":"f"}',
    '{"type":"reattach","previous_worker_id":"nobody","reattach_token":"t"}',
    b"\x00\x01\x02",
    b"LOGS not json",
    b'OTLP{"resourceSpans":[]}',
    b'MTRC{"resourceMetrics":[]}',
    "[" * 50_000 + "]" * 50_000,
]


async def test_ignored_frames_get_no_answer_and_the_next_message_works(engine_url: str, connect: Any) -> None:
    """§2.4 rule 2, §3.1 rule 2: junk, unknown types and stray frames are ignored; the socket stays open."""
    caller = await connect(engine_url)
    await caller.register("junk-sender")
    target = await connect(engine_url)
    await target.register("target")
    await target.serve("t::echo")
    for frame in IGNORED_FRAMES:
        await caller.send(frame)
    await caller.barrier()
    assert caller.inbox == []
    assert not caller.closed.is_set()
    assert (await caller.call("t::echo", {"still": "works"}))["result"] == {"still": "works"}


@pytest.mark.parametrize("binary", [False, True])
async def test_invalid_utf8_payload_is_never_relayed(engine_url: str, connect: Any, binary: bool) -> None:
    """§6.5 rule 2: a payload with invalid UTF-8 is dropped, never relayed in a text frame to the target."""
    caller = await connect(engine_url)
    await caller.register("caller")
    target = await connect(engine_url)
    await target.register("target")
    await target.serve("t::echo")
    frame = b'{"type":"invokefunction","function_id":"t::echo","invocation_id":"u1","data":"\xff\xfe"}'
    if binary:
        await caller.ws.send_bytes(frame)
    else:
        await caller.ws.send_frame(frame, aiohttp.WSMsgType.TEXT)
    await caller.barrier()
    await target.barrier()
    assert target.received("invokefunction") == []
    assert (await caller.call("t::echo", "ok"))["result"] == "ok"


async def test_unknown_fields_and_node_message_type_are_ignored(engine_url: str, connect: Any) -> None:
    """§3.1 rule 2: unknown fields and Node's stray ``message_type`` do not stop a message from working."""
    provider = await connect(engine_url)
    await provider.register("provider")
    await provider.send(
        {
            "type": "registertriggertype",
            "id": "nodetype",
            "description": "d",
            "extra": {"x": 1},
            "future": True,
        }
    )
    await provider.barrier()
    worker = await connect(engine_url)
    await worker.register("node-ish", runtime="node", features=None)
    await worker.send(
        '{"type":"registertrigger","function_id":"node::echo","config":{"y":1},"metadata":{"m":1},'
        '"id":"33e80e75-8752-4850-9f44-a0e0d485c653","message_type":"registertrigger","trigger_type":"nodetype"}'
    )
    delivered = await provider.expect("registertrigger")
    assert delivered.raw == (
        '{"type":"registertrigger","id":"33e80e75-8752-4850-9f44-a0e0d485c653","trigger_type":"nodetype",'
        '"function_id":"node::echo","config":{"y":1},"metadata":{"m":1}}'
    )
    await worker.serve("node::echo", register=False)
    await worker.send({"type": "registerfunction", "id": "node::echo", "unknown": [1, 2], "retries": 3})
    await worker.barrier()
    reply = await provider.call("node::echo", {"a": 1}, observe_depth=2, caller={"x": 1}, activation="z")
    assert reply["result"] == {"a": 1}


async def test_binary_frame_with_json_is_a_protocol_message(engine_url: str, connect: Any) -> None:
    """§2.4 rule 3: a binary frame without a telemetry prefix is decoded as JSON."""
    worker = await connect(engine_url)
    await worker.send(
        compact({"type": "invokefunction", "function_id": "nope::x", "invocation_id": "b1"}).encode()
    )
    reply = await worker.expect({"invocation_id": "b1"})
    assert reply["error"]["code"] == "function_not_found"


async def test_telemetry_frames_on_root_are_not_protocol_messages(engine_url: str, connect: Any) -> None:
    """§8.1 rule 3: ``LOGS``/``OTLP``/``MTRC`` binary frames on ``/`` are telemetry, never answered."""
    worker = await connect(engine_url)
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "hi"}}]}]}]}
    await worker.send(b"LOGS" + json.dumps(body).encode())
    await worker.send(b'OTLP{"type":"ping"}')
    await worker.barrier()
    assert worker.inbox == []


# --------------------------------------------------------------------------------------------
# §2.4 rules 4-5: size limits (checklist item 3)


def _echo_frame(invocation_id: str, function_id: str, size: int) -> bytes:
    return compact(
        {
            "type": "invokefunction",
            "function_id": function_id,
            "invocation_id": invocation_id,
            "data": "x" * size,
        }
    ).encode()


@pytest.mark.slow
async def test_20_mib_fragmented_payload_round_trips(engine_url: str, connect: Any) -> None:
    """§2.4 rules 4-5: a 20 MiB call sent as ~1 MiB fragments reaches the target and comes back intact."""
    caller = await connect(engine_url)
    await caller.register("big-caller")
    target = await connect(engine_url)
    await target.register("big-target")
    await target.serve("big::echo")
    payload = "x" * (20 * MIB)
    await caller.send_fragmented(_echo_frame("big-1", "big::echo", 20 * MIB))
    reply = await caller.expect({"invocation_id": "big-1"}, timeout_s=30)
    assert reply.get("result") == payload
    invocation = await target.expect("invokefunction")
    assert invocation["data"] == payload


@pytest.mark.slow
async def test_20_mib_single_frame_payload_round_trips(engine_url: str, connect: Any) -> None:
    """§2.4 rule 5: a 20 MiB call in one frame (compressed by permessage-deflate) round-trips."""
    caller = await connect(engine_url, compress=15)
    await caller.register("big-caller")
    target = await connect(engine_url, compress=15)
    await target.register("big-target")
    await target.serve("big::echo")
    payload = {"blob": "y" * (20 * MIB), "n": 1}
    assert (await caller.call("big::echo", payload, timeout_s=30))["result"] == payload


@pytest.mark.slow
async def test_message_of_exactly_64_mib_is_accepted(engine_url: str, connect: Any) -> None:
    """§2.4 rule 5: an inbound message of 64 MiB (after reassembly) is accepted."""
    worker = await connect(engine_url)
    head = b'{"type":"ping","pad":"'
    tail = b'"}'
    await worker.send_fragmented(head + b"p" * (64 * MIB - len(head) - len(tail)) + tail, chunk=8 * MIB)
    await worker.expect("pong", timeout_s=30)
    assert not worker.closed.is_set()


@pytest.mark.slow
async def test_65_mib_message_closes_1009_and_stops_its_pending_calls(
    engine: Any, engine_url: str, connect: Any
) -> None:
    """§2.4 rule 5 (item 3): 65 MiB closes the socket with 1009; calls routed to it get invocation_stopped."""
    caller = await connect(engine_url)
    await caller.register("caller")
    target = await connect(engine_url)
    await target.register("oversized")
    await target.serve("slow::fn", lambda frame: asyncio.Event().wait())  # never answers
    invocation_id = await caller.invoke("slow::fn", {"q": 1})
    await target.expect("invokefunction")
    sending = asyncio.create_task(target.send_fragmented(b"{" + b" " * (65 * MIB) + b"}", chunk=4 * MIB))
    assert await target.wait_closed(timeout_s=30) == 1009
    reply = await caller.expect({"invocation_id": invocation_id})
    assert reply["error"] == {"code": "invocation_stopped", "message": "Invocation stopped"}
    await asyncio.gather(sending, return_exceptions=True)
    await detached(engine, target.worker_id)
    assert (await caller.call("slow::fn"))["error"]["code"] == "function_not_found"


@pytest.mark.slow
async def test_compressed_65_mib_message_closes_1009(engine_url: str, connect: Any) -> None:
    """§2.4 rule 5: the limit applies after permessage-deflate decompression too."""
    worker = await connect(engine_url, compress=15)
    sending = asyncio.create_task(worker.send('{"type":"ping","pad":"' + "a" * (65 * MIB) + '"}'))
    assert await worker.wait_closed(timeout_s=30) == 1009
    await asyncio.gather(sending, return_exceptions=True)


@pytest.mark.slow
async def test_engine_never_sends_a_message_over_64_mib(engine_url: str, connect: Any) -> None:
    """§2.4 rule 5: a relay that would exceed 64 MiB is not sent; the caller gets payload_too_large."""
    # The second call reuses a pending invocation id, so its target leg gets a 36-character UUID and
    # grows past 64 MiB although the caller's message is exactly 64 MiB.
    first, target = await _legacy_free_pair(engine_url, connect)
    await target.serve("big::sink", lambda f: NO_REPLY)
    await first.invoke("big::sink", 1, invocation_id="i")
    await target.expect("invokefunction")
    head = b'{"type":"invokefunction","function_id":"big::sink","invocation_id":"i","data":"'
    tail = b'"}'
    await first.send_fragmented(head + b"d" * (64 * MIB - len(head) - len(tail)) + tail, chunk=8 * MIB)
    reply = await first.expect(lambda f: f.get("error", {}).get("code") == "payload_too_large", timeout_s=30)
    assert reply["invocation_id"] == "i"
    await target.barrier()
    assert target.received("invokefunction") == []
    assert max(len(f.raw) for f in target.history) <= 64 * MIB


async def _legacy_free_pair(engine_url: str, connect: Any) -> tuple[RawWorker, RawWorker]:
    caller = await connect(engine_url)
    await caller.register("caller")
    target = await connect(engine_url)
    await target.register("target")
    return caller, target


# --------------------------------------------------------------------------------------------
# §2.2: auth (checklist items 29, 41)

TOKEN = "s3cret"


@pytest.fixture
async def auth_url(make_server: Any) -> str:
    server = await make_server(
        worker_managers=(WorkerManagerSettings(host="127.0.0.1", port=0, auth_token=TOKEN),)
    )
    return str(server.url)


async def test_auth_failure_sends_error_frame_and_closes_1008(auth_url: str, connect: Any) -> None:
    """§2.2 rule 4: without the token the upgrade completes, one AUTH_ERROR frame arrives, then close 1008."""
    worker = await connect(auth_url, hello=False)
    frame = await worker.expect(lambda f: True)
    assert (
        frame.raw
        == '{"type":"error","error":{"code":"AUTH_ERROR","message":"missing or invalid bearer token"}}'
    )
    assert await worker.wait_closed() == 1008
    assert worker.history == [frame]


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0"}, {"Authorization": TOKEN}],
)
async def test_wrong_credentials_are_refused(auth_url: str, connect: Any, headers: dict[str, str]) -> None:
    """§2.2 rule 2: a wrong token or scheme is refused like a missing one."""
    worker = await connect(auth_url, hello=False, headers=headers)
    assert (await worker.expect(lambda f: True))["error"]["code"] == "AUTH_ERROR"
    assert await worker.wait_closed() == 1008


async def test_bearer_token_is_accepted(auth_url: str, connect: Any) -> None:
    """§2.2 rule 2: ``Authorization: Bearer <token>`` is accepted."""
    worker = await connect(auth_url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert is_uuid4(worker.worker_id)
    await worker.register("authed")
    assert (await worker.call("engine::functions::list", {}))["result"]["functions"] == []


async def test_query_token_is_accepted_on_root(auth_url: str, connect: Any) -> None:
    """§6.5 rule 9 (item 41): ``?token=`` on ``/`` is accepted for the 0.11 SDKs."""
    worker = await connect(auth_url, path=f"/?token={TOKEN}")
    await worker.barrier()


async def test_query_token_is_not_accepted_on_otel(auth_url: str, connect: Any) -> None:
    """§6.5 rule 9: ``/otel`` keeps the auth of §2.2 (header only)."""
    otel = await connect(auth_url, path=f"/otel?token={TOKEN}", hello=False)
    assert (await otel.expect(lambda f: True))["error"]["code"] == "AUTH_ERROR"
    assert await otel.wait_closed() == 1008


async def test_channel_sockets_do_not_need_the_token(auth_url: str, connect: Any) -> None:
    """§6.5 rule 9: channel sockets carry their own key and never need the token."""
    worker = await connect(auth_url, headers={"Authorization": f"Bearer {TOKEN}"})
    refs = await worker.result("engine::channels::create", {})
    writer = refs["writer"]
    async with aiohttp.ClientSession() as session:
        url = f"{auth_url}/ws/channels/{writer['channel_id']}?key={writer['access_key']}&dir=write"
        ws = await session.ws_connect(url)
        await ws.close()


# --------------------------------------------------------------------------------------------
# §8: /otel is never a worker


async def test_otel_socket_is_never_a_worker(engine_url: str, connect: Any) -> None:
    """§8.1 rule 1: ``/otel`` gets no ``workerregistered``, never replies and is not listed as a worker."""
    otel = await connect(engine_url, path="/otel", hello=False)
    await otel.send(b'OTLP{"resourceSpans":[]}')
    await otel.send(compact({"type": "ping"}))
    await otel.send(
        compact({"type": "invokefunction", "function_id": "engine::workers::register", "invocation_id": "o1"})
    )
    worker = await connect(engine_url)
    await worker.register("observer")
    listed = await worker.result("engine::workers::list", {})
    assert [w["name"] for w in listed["workers"] if w["status"] == "connected"] == ["observer"]
    assert otel.inbox == []
    assert not otel.closed.is_set()


# --------------------------------------------------------------------------------------------
# §2.4 rule 6: keepalive (checklist item 38, raw equivalent)


@pytest.fixture
def fast_pings(monkeypatch: pytest.MonkeyPatch) -> float:
    """Engine pings every 200 ms (read per connection): a silent peer is dropped after ~2 intervals."""
    monkeypatch.setenv("PYIII_PING_INTERVAL_MS", "200")
    return 0.2


async def test_engine_pings_every_connection(engine_url: str, connect: Any, fast_pings: float) -> None:
    """§2.4 rule 6: the engine sends WebSocket pings on its own; a peer that answers stays connected."""
    silent = await connect(engine_url, autoping=False)
    answering = await connect(engine_url)
    await answering.register("answers-pings")
    await answering.serve("alive::fn")
    assert await silent.wait_closed(timeout_s=5) == 1012
    assert silent.pings >= 1
    assert (await answering.call("alive::fn", 1))["result"] == 1


async def test_half_open_peer_is_dropped_and_its_functions_released(
    engine: Any, engine_url: str, connect: Any, fast_pings: float
) -> None:
    """§2.4 rule 6 (item 38): a peer that stops reading is dropped after missed pongs; others serve."""
    dead = await connect(engine_url)
    await dead.register("node-legacy", runtime="node", features=None)
    await dead.serve("shared::fn", lambda frame: "dead")
    alive = await connect(engine_url)
    await alive.register("node-legacy-2", runtime="node", features=None)
    await alive.serve("shared::fn", lambda frame: "alive")
    caller = await connect(engine_url)
    await caller.register("caller")
    await dead.freeze()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await detached(engine, dead.worker_id, timeout_s=5)
    assert loop.time() - started < 2.0 * TIME_FACTOR  # ~2-3 intervals of 200 ms, not the close timeout
    results = [(await caller.call("shared::fn", i))["result"] for i in range(10)]
    assert results == ["alive"] * 10


# --------------------------------------------------------------------------------------------
# §6.5 rule 3: the 1 MiB limit of 0.11 Python workers (checklist item 39)


async def _legacy_pair(engine_url: str, connect: Any) -> tuple[RawWorker, RawWorker]:
    legacy = await connect(engine_url)
    await legacy.register("py-0.11", runtime="python", features=None)
    modern = await connect(engine_url)
    await modern.register("py-0.25")
    return legacy, modern


async def test_no_frame_over_1_mib_is_sent_to_a_legacy_python_worker(engine_url: str, connect: Any) -> None:
    """§6.5 rule 3 (item 39): a call over 1 MiB to a 0.11 Python worker fails with payload_too_large."""
    legacy, modern = await _legacy_pair(engine_url, connect)
    await legacy.serve("legacy::echo")
    reply = await modern.call("legacy::echo", "z" * (2 * MIB))
    assert reply["error"]["code"] == "payload_too_large"
    size, limit = map(int, re.findall(r"(\d+) bytes", reply["error"]["message"]))
    assert size > 2 * MIB and limit == MIB
    await legacy.barrier()
    assert legacy.received("invokefunction") == []
    assert max(len(f.raw) for f in legacy.history) <= MIB
    assert (await modern.call("legacy::echo", "small"))["result"] == "small"


async def test_result_over_1_mib_for_a_legacy_caller_becomes_payload_too_large(
    engine_url: str, connect: Any
) -> None:
    """§6.5 rule 3 (item 39): a 2 MiB result for a 0.11 Python caller becomes payload_too_large."""
    legacy, modern = await _legacy_pair(engine_url, connect)
    await modern.serve("big::result", lambda frame: "r" * (2 * MIB) if frame["data"] == "big" else "ok")
    reply = await legacy.call("big::result", "big")
    assert reply["error"]["code"] == "payload_too_large"
    assert max(len(f.raw) for f in legacy.history) <= MIB
    assert (await legacy.call("big::result", "small"))["result"] == "ok"


async def test_worker_without_register_is_limited_to_1_mib(engine_url: str, connect: Any) -> None:
    """§6.5 rule 3: before its register payload arrives, a connection is sent nothing over 1 MiB."""
    unknown = await connect(engine_url)
    caller = await connect(engine_url)
    await caller.register("caller")
    await caller.serve("big::result", lambda frame: "r" * (2 * MIB))
    reply = await unknown.call("big::result")
    assert reply["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("runtime", "features"),
    [("python", ["large-messages.v1"]), ("node", None), ("node", []), ("rust", None)],
)
async def test_other_workers_get_large_frames(
    engine_url: str, connect: Any, runtime: str, features: list[str] | None
) -> None:
    """§6.5 rule 3: only Python workers without ``large-messages.v1`` keep the 1 MiB limit."""
    target = await connect(engine_url)
    await target.register("big-ok", runtime=runtime, features=features)
    await target.serve("big::echo")
    caller = await connect(engine_url)
    await caller.register("caller")
    payload = "q" * (2 * MIB)
    assert (await caller.call("big::echo", payload))["result"] == payload


# --------------------------------------------------------------------------------------------
# §6.2: eviction by identity (checklist item 40), registerservice (item 41)


@pytest.fixture
def quick_probe(engine: Any) -> None:
    """Shorten the identity probe (2000 ms in production) so the eviction test stays fast."""
    from dataclasses import replace

    engine.settings = replace(engine.settings, identity_probe_ms=300)


async def test_stale_connection_is_evicted_by_identity(
    engine: Any, engine_url: str, connect: Any, quick_probe: None
) -> None:
    """§6.2 (item 40): same name/pid/os/IP and no pong to the probe: the old connection is evicted."""
    old = await connect(engine_url, autoping=False)
    await old.register("legacy-worker", runtime="node", features=None, pid=4242, wait=False)
    await old.serve("legacy::fn", lambda frame: "old")
    new = await connect(engine_url)
    await new.register("legacy-worker", runtime="node", features=None, pid=4242)
    await new.serve("legacy::fn", lambda frame: "new")
    caller = await connect(engine_url)
    await caller.register("caller")
    assert await old.wait_closed() == 1001
    await detached(engine, old.worker_id)
    results = {(await caller.call("legacy::fn"))["result"] for _ in range(6)}
    assert results == {"new"}


async def test_live_connection_with_same_identity_is_not_evicted(
    engine: Any, engine_url: str, connect: Any, quick_probe: None
) -> None:
    """§6.2: a connection that answers the probe is live and stays an owner."""
    first = await connect(engine_url)
    await first.register("twin", runtime="node", features=None, pid=777)
    await first.serve("twin::fn", lambda frame: "first")
    second = await connect(engine_url)
    await second.register("twin", runtime="node", features=None, pid=777)
    await second.serve("twin::fn", lambda frame: "second")
    caller = await connect(engine_url)
    await caller.register("caller")
    await asyncio.gather(*engine._background)  # the identity probe: a ping the client answers at once
    assert not engine.peers[first.worker_id].probing
    results = {(await caller.call("twin::fn"))["result"] for _ in range(6)}
    assert results == {"first", "second"}
    assert not first.closed.is_set()


async def test_same_name_from_other_pid_is_not_probed(engine: Any, engine_url: str, connect: Any) -> None:
    """§6.2: identity is name, pid, os and IP together; another pid is another worker."""
    first = await connect(engine_url, autoping=False)
    await first.register("same-name", pid=1)
    second = await connect(engine_url)
    await second.register("same-name", pid=2)
    assert not engine.peers[first.worker_id].probing
    await first.barrier()
    assert not first.closed.is_set()


async def test_registerservice_is_accepted_silently(engine_url: str, connect: Any) -> None:
    """§6.5 rule 5 (item 41): ``registerservice`` gets no answer and changes nothing."""
    worker = await connect(engine_url)
    await worker.register("legacy", runtime="python", features=None)
    await worker.send({"type": "registerservice", "id": "svc", "name": "svc", "parent_service_id": None})
    await worker.send({"type": "registerservice", "id": "svc", "name": "svc", "description": "again"})
    await worker.barrier()
    assert worker.inbox == []
    assert (await worker.call("engine::functions::list", {}))["result"] == {"functions": []}


async def test_a_worker_that_reads_nothing_is_disconnected(
    engine: Any, engine_url: str, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that stops reading its socket while calls keep being routed to it does not grow the
    engine's memory without bound: past ``send_limit`` + ``SEND_BUFFER_SLACK`` unread bytes the
    engine drops the connection, the calls routed to it fail with invocation_stopped, and other
    workers carry on."""
    from pyiii.server import worker_socket

    monkeypatch.setattr(worker_socket, "SEND_BUFFER_SLACK", 2 * MIB)
    caller = await connect(engine_url)
    await caller.register("caller")
    stuck = await connect(engine_url)
    await stuck.register("stuck")
    await stuck.register_function("stuck::fn")
    await stuck.barrier()
    transport = stuck.ws._conn.transport  # type: ignore[union-attr]
    transport.pause_reading()  # the worker's process stops reading (a blocked event loop)
    payload = "x" * (512 * 1024)
    calls: list[Any] = []
    # Each round routes 4 MiB of calls to it; the kernel's socket buffers take some tens of MiB,
    # then the engine's own buffer grows until it passes send_limit + 2 MiB.
    rounds = 0
    while engine.peers.get(stuck.worker_id) is not None and rounds < 100:
        calls += [engine.invoke_future("stuck::fn", {"pad": payload}) for _ in range(8)]
        rounds += 1
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    await detached(engine, stuck.worker_id)
    transport.resume_reading()  # the client sees the connection the engine aborted
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert {getattr(o, "code", o) for o in outcomes} == {"invocation_stopped"}
    assert rounds < 100  # it stopped well before the loop ran out (about 70 MiB routed here)
    assert (await caller.call("stuck::fn"))["error"]["code"] == "function_not_found"  # the caller carries on
