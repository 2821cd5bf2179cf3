"""What a (re)connect sends, as a message list (spec/protocol.md §10.5 rules 1-4)."""

from __future__ import annotations

import json
import os

import pytest
from msgspec import UNSET

from pyiii._version import __version__
from pyiii.protocol.codec import encode
from pyiii.protocol.messages import (
    InvokeFunction,
    Reattach,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
)
from pyiii.sdk.replay import call_namespace, replay_messages, worker_register_payload
from pyiii.sdk.types import InitOptions, TelemetryOptions

PAYLOAD = {"runtime": "python"}


def _replay(**kwargs: object) -> list[object]:
    args: dict[str, object] = {
        "previous_worker_id": None,
        "reattach_token": None,
        "register_payload": PAYLOAD,
        "trigger_types": [RegisterTriggerType(id="tt")],
        "functions": [RegisterFunction(id="a::f"), RegisterFunction(id="a::g")],
        "triggers": [RegisterTrigger(id="t1", trigger_type="tt", function_id="a::f")],
        "queued": [InvokeFunction(function_id="b::h", invocation_id="q1")],
    }
    args.update(kwargs)
    return replay_messages(**args)  # type: ignore[arg-type]


def test_first_connect_registers_then_types_functions_triggers_then_queued() -> None:
    """Order: engine::workers::register (Void), trigger types, functions, triggers, queued frames."""
    messages = _replay()
    assert [type(m).__name__ for m in messages] == [
        "InvokeFunction",
        "RegisterTriggerType",
        "RegisterFunction",
        "RegisterFunction",
        "RegisterTrigger",
        "InvokeFunction",
    ]
    register = messages[0]
    assert isinstance(register, InvokeFunction)
    assert register.function_id == "engine::workers::register"
    assert register.action == {"type": "void"}
    assert register.invocation_id is UNSET
    assert register.namespace == "default"
    assert register.data is PAYLOAD
    assert messages[-1].invocation_id == "q1"  # type: ignore[attr-defined]


def test_reconnect_starts_with_reattach() -> None:
    """With a previous worker_id the replay begins with reattach carrying the id and token."""
    messages = _replay(previous_worker_id="w-1", reattach_token="tok")
    assert messages[0] == Reattach(previous_worker_id="w-1", reattach_token="tok")
    assert isinstance(messages[1], InvokeFunction)


def test_reattach_without_token_omits_it() -> None:
    """A reattach without a known token leaves the field out."""
    messages = _replay(previous_worker_id="w-1")
    assert json.loads(encode(messages[0])) == {"type": "reattach", "previous_worker_id": "w-1"}


def test_empty_worker_replays_only_the_registration() -> None:
    """A worker with nothing registered sends just engine::workers::register."""
    messages = _replay(trigger_types=[], functions=[], triggers=[], queued=[])
    assert len(messages) == 1


def test_register_payload_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime, version, name, description, os, pid, isolation, namespace, telemetry, features (rule 3)."""
    monkeypatch.setenv("III_ISOLATION", "docker")
    options = InitOptions(worker_description="does things", telemetry=TelemetryOptions(project_name="p"))
    payload = worker_register_payload(options, "w", "orders")
    assert payload["runtime"] == "python"
    assert payload["version"] == __version__
    assert payload["name"] == "w"
    assert payload["description"] == "does things"
    assert payload["pid"] == os.getpid()
    assert isinstance(payload["os"], str) and payload["os"]
    assert payload["isolation"] == "docker"
    assert payload["namespace"] == "orders"
    assert payload["telemetry"]["project_name"] == "p"
    assert payload["telemetry"]["framework"] == "pyiii"
    assert payload["features"] == ["large-messages.v1"]


def test_register_payload_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without options: no description key, isolation and namespace null."""
    monkeypatch.delenv("III_ISOLATION", raising=False)
    payload = worker_register_payload(InitOptions(), "w", None)
    assert "description" not in payload
    assert payload["isolation"] is None
    assert payload["namespace"] is None
    json.loads(encode(payload))  # JSON-able


@pytest.mark.parametrize(
    ("function_id", "explicit", "worker_ns", "expected"),
    [
        ("orders::create", None, None, None),
        ("orders::create", None, "orders", "orders"),
        ("engine::functions::list", None, "orders", "default"),
        ("configuration::get", None, "orders", "default"),
        ("orders::create", "other", "orders", "other"),
        ("engine::x", "other", "orders", "other"),
    ],
)
def test_call_namespace_stamping(function_id: str, explicit: str | None, worker_ns: str | None,
                                 expected: str | None) -> None:  # fmt: skip
    """default for engine::* and configuration::*, else the worker's namespace; explicit wins (rule 4)."""
    assert call_namespace(function_id, explicit, worker_ns) == expected


def test_data_and_config_are_always_written() -> None:
    """invokefunction carries "data": null and registertrigger "config": null when absent (rule 1)."""
    invoke = json.loads(encode(InvokeFunction(function_id="x::y", invocation_id="i")))
    assert "data" in invoke and invoke["data"] is None
    trigger = json.loads(encode(RegisterTrigger(id="t", trigger_type="http", function_id="x::y")))
    assert "config" in trigger and trigger["config"] is None
