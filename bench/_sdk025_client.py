"""Worker A on the official Python SDK (iii-sdk 0.25.0) for ``bench/invoke.py``.

Runs under ``.compat/py-0.25/bin/python`` (installed by ``scripts/setup-compat``), which has no pyiii:
it imports only the standard library, ``iii`` and ``bench/_common.py``. It calls ``bench::echo``
(served by a pyiii-SDK worker) through the pyiii engine with ``trigger_async`` awaited on the SDK's
own event loop, the same place the pyiii client measures from. SDK options are the defaults
(OpenTelemetry included): the number is what a user of that SDK pays.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Target, emit, pin_cpu_from_env, serve_commands, wait_until_callable


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--plan", required=True)
    args = parser.parse_args()
    plan: dict[str, Any] = json.loads(args.plan)
    pin_cpu_from_env()

    import iii

    client = iii.register_worker(args.url, iii.InitOptions(worker_name="bench-a-sdk025"))
    request = {"function_id": plan["function_id"], "payload": plan["payload"]}

    def call() -> Any:
        return client.trigger_async(request)

    try:
        # The SDK's private loop: the measurement runs where an async handler of this SDK would.
        loop = client._loop
        asyncio.run_coroutine_threadsafe(wait_until_callable(call), loop).result(60)
        serve_commands({"call": Target(call, loop)}, plan.get("cpu_pids"), sdk_version=_version())
    except Exception as exc:
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        client.shutdown()
    return 0


def _version() -> str:
    import importlib.metadata

    return importlib.metadata.version("iii-sdk")


if __name__ == "__main__":
    sys.exit(main())
