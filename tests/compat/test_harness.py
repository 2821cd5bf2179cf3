"""The worker programs themselves, without an engine: they start, parse plans and report failures."""

from __future__ import annotations

import pytest
from harness import ALL_SDKS, SdkWorker, free_port

pytestmark = pytest.mark.compat


@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_worker_reports_an_unreachable_engine_and_exits_cleanly(sdk: str) -> None:
    """With nothing listening, a worker reports connect_timeout, keeps retrying, and exits 0 on `exit`."""
    url = f"ws://127.0.0.1:{free_port()}"
    worker = SdkWorker(sdk, {"url": url, "worker_name": "lonely", "connect_timeout_ms": 300})
    try:
        await worker.start(wait_ready=False)
        started = worker.find({"event": "started"})[0]
        assert started["sdk"] == sdk and started["pid"] == worker.pid
        await worker.wait_event({"event": "connect_timeout", "url": url})
        reply = await worker.command("state")
        assert reply["state"] in ("connecting", "reconnecting", "disconnected")
        assert reply["worker_id"] is None
        await worker.command("exit")
        assert await worker.wait_exit(timeout_s=15) == 0
        assert not worker.find({"event": "ready"})
    finally:
        await worker.stop()


@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_worker_rejects_a_bad_plan(sdk: str) -> None:
    """A plan without a url is reported as a fatal bad_plan event and exit code 2."""
    worker = SdkWorker(sdk, {"url": 42})
    try:
        with pytest.raises(AssertionError, match="stream ended"):
            await worker.start(wait_ready=False)
        assert worker.find({"event": "fatal", "code": "bad_plan"})
        assert await worker.wait_exit() == 2
    finally:
        await worker.stop()


@pytest.mark.parametrize("sdk", ALL_SDKS)
async def test_commands_before_connect_are_refused(sdk: str) -> None:
    """With `connect: on_command`, calls before `connect` get a failed reply instead of hanging."""
    worker = SdkWorker(sdk, {"url": f"ws://127.0.0.1:{free_port()}", "connect": "on_command"})
    try:
        await worker.start(wait_ready=False)
        reply = await worker.command("sync", check=False)
        assert not reply["ok"] and "not connected" in reply["message"]
    finally:
        await worker.stop()
