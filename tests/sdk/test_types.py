"""Public value types: InitOptions, TriggerAction, TriggerRequest (spec/protocol.md §10.3-§10.4)."""

from __future__ import annotations

import os
import socket

import pytest

from pyiii import (
    EngineFunctions,
    EngineTriggers,
    InitOptions,
    ReconnectionConfig,
    TriggerAction,
    TriggerRequest,
)
from pyiii.sdk.client import _wire_action


def test_trigger_actions_have_the_wire_shape() -> None:
    """TriggerAction.Void() is {"type":"void"}; Enqueue(queue=...) is {"type":"enqueue","queue":...}."""
    assert _wire_action(TriggerAction.Void()) == {"type": "void"}
    assert _wire_action(TriggerAction.Enqueue(queue="jobs")) == {"type": "enqueue", "queue": "jobs"}
    assert TriggerAction.Enqueue(queue="jobs").model_dump() == {"type": "enqueue", "queue": "jobs"}
    assert _wire_action({"type": "void"}) == {"type": "void"}
    assert _wire_action(None) is None
    with pytest.raises(TypeError):
        _wire_action("void")


def test_trigger_request_defaults() -> None:
    """Every TriggerRequest field but function_id defaults to None."""
    request = TriggerRequest("a::b")
    assert (request.payload, request.action, request.timeout_ms, request.metadata, request.namespace) == (
        None,
        None,
        None,
        None,
        None,
    )


def test_init_options_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name <hostname>:<pid>, timeout 30000, reconnection 1000/30000/2.0/0.3/-1."""
    monkeypatch.delenv("III_WORKER_NAME", raising=False)
    monkeypatch.delenv("III_NAMESPACE", raising=False)
    options = InitOptions()
    assert options.resolved_worker_name() == f"{socket.gethostname()}:{os.getpid()}"
    assert options.resolved_namespace() is None
    assert options.invocation_timeout_ms == 30000
    assert ReconnectionConfig() == ReconnectionConfig(1000, 30000, 2.0, 0.3, -1)


def test_worker_name_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """$III_WORKER_NAME overrides the default and an explicit name."""
    monkeypatch.setenv("III_WORKER_NAME", "managed")
    assert InitOptions(worker_name="mine").resolved_worker_name() == "managed"


def test_namespace_from_env_and_blank_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    """$III_NAMESPACE is the default namespace; a blank namespace raises ValueError."""
    monkeypatch.setenv("III_NAMESPACE", "orders")
    assert InitOptions().resolved_namespace() == "orders"
    assert InitOptions(namespace="mine").resolved_namespace() == "mine"
    with pytest.raises(ValueError):
        InitOptions(namespace="  ")
    monkeypatch.setenv("III_NAMESPACE", "   ")
    with pytest.raises(ValueError):
        InitOptions().resolved_namespace()


def test_compatibility_options_are_accepted() -> None:
    """enable_metrics_reporting and otel are accepted and ignored."""
    InitOptions(enable_metrics_reporting=False, otel={"enabled": False})


def test_engine_ids() -> None:
    """EngineFunctions / EngineTriggers name the engine's ids."""
    assert EngineFunctions.LIST_FUNCTIONS == "engine::functions::list"
    assert EngineFunctions.REGISTER_WORKER == "engine::workers::register"
    assert EngineTriggers.FUNCTIONS_AVAILABLE == "engine::functions-available"
