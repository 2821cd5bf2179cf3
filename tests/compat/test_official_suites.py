"""The official Python SDK's own HTTP and stream tests (iii-sdk 0.25.0 sdist, unmodified) against a
pyiii engine (http.md §16 item 35, stream.md §9 item 40; its state tests as well).

`scripts/setup-sdk-suites` (run by `make setup`) unpacks the sdist's `tests/` into
`.compat/sdk-suites/py-0.25/`; each file below runs there with the SDK's own venv, pointed at a pyiii
engine subprocess by the suite's `III_URL` / `III_HTTP_URL` variables. The files are the ones that
exercise the HTTP trigger type: API triggers (routing, params, bodies, status codes, content types,
streaming up and down, SSE, forms), middleware (per route, ordering, input, namespaces) and the
health-check route; the stream functions and custom stream implementations; the state functions.

Not run, with the reason:
- `test_http_external_functions_integration.py`: "HTTP external functions" (the engine calling a URL as
  a function, the reference's HttpFunctionsModule) are not part of pyiii's spec; its unit tests
  (a fake socket, no engine) pass anyway.
- Node 0.22.1: the npm tarball ships no tests (only `vitest.config.ts`), so there is no suite to run.
- Three `test_api_triggers.py` tests skip themselves: the sdist omits their fixture
  `tests/files/handbook.pdf` (the suite's own skip).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest
from harness import ROOT, EngineProcess, free_port

SUITE = ROOT / ".compat" / "sdk-suites" / "py-0.25"
PYTHON = ROOT / ".compat" / "py-0.25" / "bin" / "python"
HTTP_FILES = (
    "test_api_triggers.py",
    "test_middleware.py",
    "test_middleware_input_namespace.py",
    "test_healthcheck.py",
)
#: stream.md §9 item 40: the stream functions, triggers and `create_stream` custom implementations.
STREAM_FILES = ("test_streams.py",)
#: Not a checklist item, run because it is there: the state functions through the SDK.
STATE_FILES = ("test_state.py",)
IN_MEMORY = {"store_method": "in_memory"}
_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")

pytestmark = pytest.mark.compat


def _missing() -> str | None:
    if not (SUITE / ".stamp").is_file() or not PYTHON.is_file():
        return "the official SDK suite is not unpacked: run `make setup` (scripts/setup-sdk-suites)"
    return None


@pytest.mark.parametrize("suite_file", HTTP_FILES + STREAM_FILES + STATE_FILES)
async def test_official_python_sdk_suite_passes(tmp_path: Path, suite_file: str) -> None:
    """The iii-sdk 0.25.0 suite file passes unmodified against a pyiii engine (http, state, stream)."""
    missing = _missing()
    if missing is not None:
        pytest.fail(missing)  # make test installs it: a missing suite is a setup bug, not a skip
    http_port = free_port()
    engine = EngineProcess(
        tmp_path,
        modules=[
            {"name": "iii-http", "config": {"port": http_port}},
            {"name": "iii-state", "config": {"adapter": {"name": "kv", "config": IN_MEMORY}}},
            {
                "name": "iii-stream",
                "config": {"port": free_port(), "adapter": {"name": "kv", "config": IN_MEMORY}},
            },
        ],
    )
    await engine.start()
    try:
        env = {
            **os.environ,
            "III_URL": engine.url,
            "III_HTTP_URL": f"http://127.0.0.1:{http_port}",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        # `-c /dev/null`: the sdist's pytest config wants pytest-cov; the suite's conftest still loads.
        argv = [
            str(PYTHON),
            "-m",
            "pytest",
            "-c",
            os.devnull,
            "--rootdir",
            str(SUITE / "tests"),
            "-o",
            "asyncio_mode=auto",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            f"tests/{suite_file}",
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=SUITE,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    finally:
        engine.kill()
        await engine.stop()
    text = out.decode("utf-8", "replace")
    counts = {kind.rstrip("s"): int(n) for n, kind in _SUMMARY.findall(text.splitlines()[-1] if text else "")}
    assert proc.returncode == 0, f"{suite_file} failed against pyiii:\n{text[-6000:]}"
    assert counts.get("passed", 0) > 0, text[-3000:]
    assert "engine not available" not in text, text[-3000:]
    print(f"{suite_file}: {counts}", file=sys.stderr)
