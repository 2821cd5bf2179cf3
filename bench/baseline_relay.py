"""The baseline of ``bench/invoke.py``: a bare aiohttp WebSocket relay doing the same two hops.

client --invokefunction--> relay --invokefunction--> echo
client <--invocationresult-- relay <--invocationresult-- echo

Three processes like the pyiii run (relay in place of the engine, echo in place of worker B, client in
place of worker A), uvloop in each, the same frames (iii protocol JSON text frames) and the same
msgspec work a minimal router has to do: the relay decodes each frame into a struct whose payload
stays ``msgspec.Raw`` (to learn where it goes) and encodes it again; the echo decodes the payload into
Python values and encodes the result; the client encodes the call and decodes the result. What it
leaves out is everything pyiii adds: the function registry, invocation tracking and timeouts, one
writer task per connection, the SDK's handler tasks and pending-call bookkeeping.

Roles (each a process): ``relay --port P``, ``echo --url ws://...``, ``client --url ws://... --plan
JSON`` (then commands on stdin, see ``_common.serve_commands``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import uvloop
from aiohttp import WSMsgType, web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    Target,
    emit,
    exit_when_parent_goes,
    pin_cpu_from_env,
    serve_commands,
    start_loop_thread,
)

UNSET = msgspec.UNSET
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class RoutedFrame(msgspec.Struct, omit_defaults=True):
    """What the relay needs to route a frame; the payload stays undecoded, as in the engine."""

    type: str
    invocation_id: str | None = None
    function_id: str | None = None
    data: msgspec.Raw | msgspec.UnsetType = UNSET
    result: msgspec.Raw | msgspec.UnsetType = UNSET


class Invoke(msgspec.Struct, omit_defaults=True, tag_field="type", tag="invokefunction"):
    function_id: str
    invocation_id: str
    data: Any = None


class Result(msgspec.Struct, omit_defaults=True, tag_field="type", tag="invocationresult"):
    invocation_id: str
    function_id: str
    result: Any = None


_encode = msgspec.json.Encoder().encode
_decode_routed = msgspec.json.Decoder(RoutedFrame).decode
_decode_invoke = msgspec.json.Decoder(Invoke).decode
_decode_result = msgspec.json.Decoder(Result).decode


# ---------------------------------------------------------------------------------------------- relay


async def run_relay(port: int) -> None:
    echo_ws: list[web.WebSocketResponse] = []
    waiting: dict[str, web.WebSocketResponse] = {}  # invocation id -> the client that asked

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, autoping=False, decode_text=False)
        await ws.prepare(request)
        is_echo = request.query.get("role") == "echo"
        if is_echo:
            echo_ws.append(ws)
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            frame = _decode_routed(msg.data)
            if frame.type == "invokefunction":
                if not echo_ws or frame.invocation_id is None:
                    continue
                waiting[frame.invocation_id] = ws
                await echo_ws[0].send_frame(_encode(frame), WSMsgType.TEXT)
            elif frame.type == "invocationresult" and frame.invocation_id is not None:
                client = waiting.pop(frame.invocation_id, None)
                if client is not None and not client.closed:
                    await client.send_frame(_encode(frame), WSMsgType.TEXT)
        if is_echo:
            echo_ws.remove(ws)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, shutdown_timeout=0.1)
    await site.start()
    emit("ready", port=port)
    await _forever()


# ---------------------------------------------------------------------------------------------- echo


async def run_echo(url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{url}/?role=echo", max_msg_size=MAX_MESSAGE_BYTES, decode_text=False) as ws,
    ):
        emit("ready")
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            call = _decode_invoke(msg.data)
            reply = Result(invocation_id=call.invocation_id, function_id=call.function_id, result=call.data)
            await ws.send_frame(_encode(reply), WSMsgType.TEXT)


# ---------------------------------------------------------------------------------------------- client


async def connect_client(url: str, plan: dict[str, Any]) -> Any:
    """Open the client socket and return its ``call()``: one invokefunction, awaiting its result."""
    loop = asyncio.get_running_loop()
    futures: dict[str, asyncio.Future[Any]] = {}
    ids = itertools.count()
    payload = plan["payload"]
    function_id = plan["function_id"]
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url, max_msg_size=MAX_MESSAGE_BYTES, decode_text=False)

    async def read() -> None:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                result = _decode_result(msg.data)
                future = futures.pop(result.invocation_id, None)
                if future is not None and not future.done():
                    future.set_result(result.result)

    async def call() -> Any:
        invocation_id = str(next(ids))
        future = loop.create_future()
        futures[invocation_id] = future
        message = Invoke(function_id=function_id, invocation_id=invocation_id, data=payload)
        await ws.send_frame(_encode(message), WSMsgType.TEXT)
        return await future

    call.keep = (session, ws, asyncio.create_task(read()))  # type: ignore[attr-defined]
    return call


def run_client(url: str, plan: dict[str, Any]) -> None:
    """Like the SDK clients: the socket lives on a loop thread, commands come in on the main thread."""
    loop = uvloop.new_event_loop()
    start_loop_thread(loop, "relay-client")
    call = asyncio.run_coroutine_threadsafe(connect_client(url, plan), loop).result(30)
    serve_commands({"call": Target(call, loop)}, plan.get("cpu_pids"))


async def _forever() -> None:
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["relay", "echo", "client"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--url", default="")
    parser.add_argument("--plan", default="{}", help="client: JSON measurement plan")
    args = parser.parse_args(argv)
    pin_cpu_from_env()
    if args.role != "client":  # the client reads its commands from stdin and ends on EOF
        exit_when_parent_goes()
    try:
        if args.role == "relay":
            uvloop.run(run_relay(args.port))
        elif args.role == "echo":
            uvloop.run(run_echo(args.url))
        else:
            run_client(args.url, json.loads(args.plan))
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except BaseException as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
