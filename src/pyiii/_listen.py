"""Bind an aiohttp server or application on host:port: the worker listener, the HTTP module's and the
stream module's listeners all start this way."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def listen(
    target: web.Server | web.Application, host: str, port: int, **runner_options: Any
) -> tuple[web.BaseRunner, int]:
    """Start serving ``target``; returns the runner (``await runner.cleanup()`` stops it) and the bound
    port (the real one when ``port`` is 0). Raises ``OSError`` when the address cannot be bound, with
    nothing left running."""
    runner: web.BaseRunner
    if isinstance(target, web.Application):
        runner = web.AppRunner(target, handle_signals=False, **runner_options)
    else:
        runner = web.ServerRunner(target, handle_signals=False, **runner_options)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    sockets = getattr(site._server, "sockets", None) or []
    return runner, sockets[0].getsockname()[1] if sockets else port
