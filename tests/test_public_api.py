"""The public surface of ``pyiii`` (spec/protocol.md §10.1, STYLE habit 12)."""

from __future__ import annotations

import importlib.util

import pyiii
import pyiii.errors

SPEC_EXPORTS = {
    "register_worker",
    "III",
    "InitOptions",
    "ReconnectionConfig",
    "TelemetryOptions",
    "TriggerAction",
    "TriggerRequest",
    "TriggerHandler",
    "TriggerConfig",
    "FunctionRef",
    "Trigger",
    "TriggerTypeRef",
    "Logger",
    "EngineFunctions",
    "EngineTriggers",
    "InvocationError",
}


def test_all_is_exactly_the_spec_list_plus_version() -> None:
    """pyiii.__all__ is the §10.1 list plus __version__, and every name resolves."""
    assert set(pyiii.__all__) == SPEC_EXPORTS | {"__version__"}
    assert len(pyiii.__all__) == len(set(pyiii.__all__))
    for name in pyiii.__all__:
        assert getattr(pyiii, name) is not None


def test_errors_module_exports() -> None:
    """pyiii.errors exports InvocationError and RegistrationRejectedError, the same classes as pyiii's."""
    assert set(pyiii.errors.__all__) == {"InvocationError", "RegistrationRejectedError"}
    assert pyiii.errors.InvocationError is pyiii.InvocationError
    assert issubclass(pyiii.errors.RegistrationRejectedError, pyiii.errors.InvocationError)


def test_logger_imports_from_the_top_level() -> None:
    """`from pyiii import Logger` works (the official SDK needs iii_helpers.observability)."""
    from pyiii import Logger

    assert callable(Logger().info)


def test_invocation_error_fields() -> None:
    """InvocationError has code, message, function_id, stacktrace and invocation_id."""
    err = pyiii.InvocationError("TIMEOUT", "late", "a::b", "tb", "id-1")
    assert (err.code, err.message, err.function_id, err.stacktrace, err.invocation_id) == (
        "TIMEOUT",
        "late",
        "a::b",
        "tb",
        "id-1",
    )


def test_no_top_level_iii_package_is_installed() -> None:
    """The distribution installs pyiii only, so it coexists with the official `iii` SDK (§10)."""
    spec = importlib.util.find_spec("iii")
    assert spec is None or "pyiii" not in (spec.origin or "")
