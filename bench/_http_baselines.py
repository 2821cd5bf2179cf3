"""The baselines of ``bench/http_bench.py``: HTTP servers that echo the JSON body of ``POST /echo``.

    python bench/_http_baselines.py aiohttp --port N       # the floor: bare aiohttp on uvloop
    python bench/_http_baselines.py fastapi --port N       # FastAPI on uvicorn (uvloop + httptools)
    python bench/_http_baselines.py fastapi-raw --port N   # same, Request.json() -> JSONResponse

* ``aiohttp``: one ``web.post`` route whose handler decodes the body with msgspec and encodes it
  again (pyiii parses the body into its request object and serializes the handler's result, so the
  floor does that minimum too). No middleware, no access log.
* ``fastapi``: what a Python user writes: ``async def echo(payload: dict[str, Any]) -> dict[str, Any]``
  (FastAPI reads and validates the body, validates and serializes the result). uvicorn, 1 worker,
  ``loop="uvloop"``, ``http="httptools"``, no access log, lifespan off.
* ``fastapi-raw``: the fastest FastAPI shape, ``await request.json()`` returned as a ``JSONResponse``
  (no validation): shows how much of FastAPI's cost is its body and response handling.

Each server prints ``{"event": "ready", ...}`` once it accepts connections and exits when its stdin
closes (the orchestrator is gone or done). Loopback only.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory holds bench/http_bench.py, which would shadow the standard library's `http` package
# (aiohttp and uvicorn import http.cookies, http.HTTPStatus...): take it off the import path first.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.append(str(BENCH))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

from _common import emit, exit_when_parent_goes, pin_cpu_from_env  # noqa: E402

ROUTE = "/echo"
KINDS = ("aiohttp", "fastapi", "fastapi-raw")


def run_aiohttp(host: str, port: int) -> int:
    import msgspec
    import uvloop
    from aiohttp import web

    decode, encode = msgspec.json.decode, msgspec.json.encode

    async def echo(request: web.Request) -> web.Response:
        data = decode(await request.read())
        return web.Response(body=encode(data), content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post(ROUTE, echo)
        runner = web.AppRunner(app, handle_signals=True, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        emit("ready", kind="aiohttp", port=port, pid=os.getpid())
        try:
            await asyncio.Event().wait()  # SIGTERM (parent watch) -> GracefulExit via handle_signals
        finally:
            await runner.cleanup()

    try:
        uvloop.run(main())
    except (KeyboardInterrupt, SystemExit, web.GracefulExit):
        pass
    return 0


def fastapi_app(raw: bool) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    if raw:

        async def echo_raw(request: Any) -> Any:
            return JSONResponse(await request.json())

        # Real classes, not the strings `from __future__ import annotations` leaves (FastAPI reads them).
        echo_raw.__annotations__ = {"request": Request, "return": JSONResponse}
        app.post(ROUTE)(echo_raw)
    else:

        @app.post(ROUTE)
        async def echo(payload: dict[str, Any]) -> dict[str, Any]:
            return payload

    return app


def run_fastapi(host: str, port: int, raw: bool) -> int:
    import uvicorn

    config = uvicorn.Config(
        fastapi_app(raw),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.ensure_future(server.serve())
        while not server.started:  # bounded by the orchestrator's ready timeout
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.02)
        emit("ready", kind="fastapi-raw" if raw else "fastapi", port=port, pid=os.getpid())
        await task  # uvicorn handles SIGTERM (the parent watch) and returns

    import uvloop

    uvloop.run(main())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    pin_cpu_from_env()
    exit_when_parent_goes()
    if args.kind == "aiohttp":
        return run_aiohttp(args.host, args.port)
    return run_fastapi(args.host, args.port, raw=args.kind == "fastapi-raw")


if __name__ == "__main__":
    sys.exit(main())
