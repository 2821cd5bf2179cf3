"""Tests of pyiii.cli in-process: config-cli-modules.md §3 (argument parsing, payloads, addresses).

The command as a user runs it, as subprocesses against a real engine, is in `test_cli_e2e.py`.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiii._version import __version__
from pyiii.cli import UsageError, build_payload, main, resolve_target_url
from pyiii.config import Settings

# --------------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake_serve(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replace `pyiii.server.app` with a stub whose `serve` records its settings and returns 0."""
    calls: list[Settings] = []

    def serve(settings: Settings) -> int:
        calls.append(settings)
        return 0

    module = types.ModuleType("pyiii.server.app")
    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyiii.server.app", module)
    return calls


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("III_URL", "III_TOKEN", "III_WORKER_NAME", "III_NAMESPACE", "III_NAMESPACE_GRACE_MS"):
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------------------------------
# --version, --help, usage errors (§3.1, §3.3)


@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version_prints_bare_version(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Checklist 16: `pyiii --version` prints the bare version to stdout and exits 0."""
    assert main([flag]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (f"{__version__}\n", "")


@pytest.mark.parametrize("argv", [["-h"], ["--help"], ["trigger", "-h"]])
def test_help_exits_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """-h/--help prints usage and exits 0, for serve and for trigger."""
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("usage: pyiii")


def test_unknown_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Checklist 16: an unknown option exits 2 with a usage message."""
    assert main(["--bogus"]) == 2
    err = capsys.readouterr().err
    assert "usage: pyiii" in err and "--bogus" in err


def test_option_abbreviations_are_not_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    """`--in` is not silently taken as `--in-memory`."""
    assert main(["--in"]) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["trigger"],
        ["trigger", "fn", "--url", "ws://x:1", "--port", "1"],
        ["trigger", "fn", "--url", "ws://x:1", "--address", "h"],
        ["trigger", "fn", "--timeout-ms", "0"],
        ["trigger", "fn", "--timeout-ms", "soon"],
        ["trigger", "fn", "--port", "0"],
        ["trigger", "fn", "--port", "70000"],
        ["trigger", "fn", "--bogus"],
        ["trigger", ""],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """§3.3: unknown subcommands, a missing FUNCTION_ID and bad trigger options exit 2."""
    assert main(argv) == 2
    assert "usage: pyiii" in capsys.readouterr().err


@pytest.mark.parametrize(
    "payload_args",
    [
        ["--json", "[1]", "a=2"],
        ["--json", "{bad"],
        ["--json", "NaN"],
        ["novalue"],
        ["=1"],
    ],
)
def test_bad_payload_exits_2_before_connecting(
    payload_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Checklist 18: a bad --json or KEY=VALUE is a usage error (exit 2), checked before connecting."""
    assert main(["trigger", "fn", *payload_args, "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: pyiii trigger")
    assert "Could not connect" not in err


# --------------------------------------------------------------------------------------------------
# build_payload (§3.2 rule 1)


@pytest.mark.parametrize(
    ("json_text", "pairs", "expected"),
    [
        (None, [], {}),
        (None, ["a=10", "b=hi"], {"a": 10, "b": "hi"}),
        ('{"a":1}', ["a=2"], {"a": 2}),
        ('{"a":1,"b":{"c":1}}', ["b={}"], {"a": 1, "b": {}}),
        ("[1]", [], [1]),
        ('"text"', [], "text"),
        ("null", [], None),
        (None, ["a=1", "a=2"], {"a": 2}),
    ],
)
def test_build_payload(json_text: str | None, pairs: list[str], expected: Any) -> None:
    """Pairs set keys and override a --json object (shallow); --json alone may be any value; none gives {}."""
    assert build_payload(json_text, pairs) == expected


@pytest.mark.parametrize(
    ("pair", "value"),
    [
        ("a=true", True),
        ("a=null", None),
        ("a=1.5", 1.5),
        ("a=[1,2]", [1, 2]),
        ('a={"x":1}', {"x": 1}),
        ('a="quoted"', "quoted"),
        ("a= 7", 7),
        ("a=", ""),
        ("a=x=y", "x=y"),
        ("a=NaN", "NaN"),
        ("a=Infinity", "Infinity"),
        ("a=[1", "[1"),
        ("a=hello world", "hello world"),
    ],
)
def test_pair_values_are_json_when_possible(pair: str, value: Any) -> None:
    """A VALUE is parsed as strict JSON when possible (NaN/Infinity are not JSON), else kept as a string."""
    assert build_payload(None, [pair]) == {"a": value}


@pytest.mark.parametrize(
    ("json_text", "pairs", "message"),
    [
        ("[1]", ["a=2"], "KEY=VALUE pairs need --json to be a JSON object"),
        ("5", ["a=2"], "KEY=VALUE pairs need --json to be a JSON object"),
        ("{", [], "--json is not valid JSON"),
        ("NaN", [], "--json is not valid JSON"),
        ("", [], "--json is not valid JSON"),
        (None, ["a"], "expected KEY=VALUE, got 'a'"),
        (None, ["=1"], "empty key in '=1'"),
    ],
)
def test_build_payload_usage_errors(json_text: str | None, pairs: list[str], message: str) -> None:
    """A non-object --json with pairs, invalid JSON, a token without `=` or an empty key is a UsageError."""
    with pytest.raises(UsageError) as info:
        build_payload(json_text, pairs)
    assert str(info.value).startswith(message)


def test_build_payload_does_not_mutate_json_object() -> None:
    """Overriding keys builds a new object (shallow merge)."""
    inner = {"c": 1}
    payload = build_payload(json.dumps({"a": 1, "b": inner}), ["a=2"])
    assert payload == {"a": 2, "b": {"c": 1}}


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@given(
    st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: "=" not in k), _json_values, max_size=5)
)
def test_pairs_round_trip_json_values(values: dict[str, Any]) -> None:
    """Property: `KEY=<json of v>` pairs rebuild the object exactly."""
    pairs = [f"{key}={json.dumps(value)}" for key, value in values.items()]
    assert build_payload(None, pairs) == values


@given(st.text(max_size=20))
def test_pair_value_is_json_or_the_raw_string(text: str) -> None:
    """Property: a VALUE that is not JSON is taken verbatim as a string."""
    try:
        expected = json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    except ValueError:
        expected = text
    assert build_payload(None, [f"k={text}"]) == {"k": expected}


# --------------------------------------------------------------------------------------------------
# resolve_target_url (§3.2 rule 2)


@pytest.mark.parametrize(
    ("url", "address", "port", "env", "expected"),
    [
        ("ws://e:1", None, None, {"III_URL": "ws://env:2"}, "ws://e:1"),
        (None, "10.0.0.1", None, {"III_URL": "ws://env:2"}, "ws://10.0.0.1:49134"),
        (None, None, 4000, {"III_URL": "ws://env:2"}, "ws://127.0.0.1:4000"),
        (None, "h", 4000, {}, "ws://h:4000"),
        (None, "::1", 4000, {}, "ws://[::1]:4000"),
        (None, None, None, {"III_URL": "ws://env:2"}, "ws://env:2"),
        (None, None, None, {"III_URL": "  "}, "ws://127.0.0.1:49134"),
        (None, None, None, {}, "ws://127.0.0.1:49134"),
    ],
)
def test_resolve_target_url(
    url: str | None, address: str | None, port: int | None, env: dict[str, str], expected: str
) -> None:
    """--url, else ws://HOST:PORT from --address/--port, else $III_URL, else ws://127.0.0.1:49134."""
    assert resolve_target_url(url, address, port, env) == expected


# --------------------------------------------------------------------------------------------------
# serve (§3.1)


def test_serve_config_error_exits_1_with_one_line(
    tmp_path: Path, fake_serve: list[Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    """A config error prints its one line to stderr, exits 1 and never starts the server."""
    path = tmp_path / "config.yaml"
    path.write_text("workers:\n  - name: iii-htpp\n")
    assert main(["-c", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"pyiii: config error: {path}: workers[0].name: unknown module 'iii-htpp'")
    assert captured.err.count("\n") == 1
    assert fake_serve == []


def test_serve_missing_config_exits_1(tmp_path: Path, fake_serve: list[Settings]) -> None:
    """`-c` naming a missing file exits 1."""
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 1
    assert fake_serve == []


def test_serve_passes_settings_and_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    """The loaded settings go to `pyiii.server.app.serve`, whose return value is the exit code."""
    seen: list[Settings] = []
    module = types.ModuleType("pyiii.server.app")
    module.serve = lambda settings: seen.append(settings) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyiii.server.app", module)
    path = tmp_path / "c.yaml"
    path.write_text("workers:\n  - name: queue\n  - name: iii-http-functions\n")
    assert main(["-c", str(path)]) == 7
    assert len(seen) == 1 and seen[0].queue is not None and seen[0].source_file == str(path)
    assert seen[0].warnings == ("module 'iii-http-functions' is not provided by pyiii; skipped",)


def test_serve_without_config_uses_default_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_serve: list[Settings], clean_env: None
) -> None:
    """Without -c and without ./config.yaml, the default set under --data-dir is served."""
    monkeypatch.chdir(tmp_path)
    assert main(["--data-dir", "./other"]) == 0
    (settings,) = fake_serve
    assert settings.source_file is None
    assert settings.state is not None and settings.state.adapter.file_path == "./other/state_store.db"
    assert settings.warnings == ()


def test_serve_in_memory_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_serve: list[Settings], clean_env: None
) -> None:
    """--in-memory reaches the settings: every kv store is in memory."""
    monkeypatch.chdir(tmp_path)
    assert main(["--in-memory"]) == 0
    (settings,) = fake_serve
    assert settings.state is not None and settings.state.adapter.store_method == "in_memory"
    assert settings.stream is not None and settings.stream.adapter.store_method == "in_memory"


def test_data_dir_with_config_file_warns(tmp_path: Path, fake_serve: list[Settings], clean_env: None) -> None:
    """--data-dir with a config file is ignored, with a warning."""
    path = tmp_path / "c.yaml"
    path.write_text("workers:\n  - name: state\n")
    assert main(["-c", str(path), "--data-dir", "x"]) == 0
    (settings,) = fake_serve
    assert settings.warnings == (f"--data-dir is ignored because the config file {path} is used",)


# --------------------------------------------------------------------------------------------------
# pyiii trigger without an engine (§3.2 rule 6)


@pytest.mark.parametrize("target", ["--port", "--url"])
def test_trigger_without_engine_exits_1_quickly(
    target: str, capsys: pytest.CaptureFixture[str], clean_env: None
) -> None:
    """Checklist 19: no engine -> one line on stderr and exit 1 within --timeout-ms."""
    port = free_port()
    value = str(port) if target == "--port" else f"ws://127.0.0.1:{port}"
    started = time.monotonic()
    assert main(["trigger", "fn", "a=1", target, value, "--timeout-ms", "3000"]) == 1
    assert time.monotonic() - started < 3.0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"Could not connect to the engine at ws://127.0.0.1:{port}: ")
    assert captured.err.count("\n") == 1


def test_trigger_uses_iii_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --url/--address/--port, `pyiii trigger` targets $III_URL."""
    port = free_port()
    monkeypatch.setenv("III_URL", f"ws://127.0.0.1:{port}")
    assert main(["trigger", "fn", "--timeout-ms", "2000"]) == 1
    assert f"ws://127.0.0.1:{port}" in capsys.readouterr().err
