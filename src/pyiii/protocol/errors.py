"""Error codes of the worker protocol (spec/protocol.md §4.6) and pyiii's exception tree.

    PyiiiError
    ├── InvocationError(code, message, function_id, stacktrace, invocation_id)
    │   └── RegistrationRejectedError(code, message, function_id, namespace)
    └── TriggerRegistrationError(code, message)     a provider refused a binding's config

The wire ``ErrorBody`` of an error is built in one place: :meth:`InvocationError.body`.
"""

from __future__ import annotations

from typing import Any

FUNCTION_NOT_FOUND = "function_not_found"
INVOCATION_FAILED = "invocation_failed"
INVOCATION_STOPPED = "invocation_stopped"
INVOCATION_TIMEOUT = "invocation_timeout"
INVALID_ACTION = "invalid_action"
INVALID_MESSAGE = "invalid_message"
ENQUEUE_ERROR = "enqueue_error"
FORBIDDEN = "FORBIDDEN"
INVALID_NAMESPACE = "INVALID_NAMESPACE"
DESERIALIZATION_ERROR = "deserialization_error"
INVOCATION_ERROR = "invocation_error"
TRIGGER_REGISTRATION_FAILED = "trigger_registration_failed"
TRIGGER_TYPE_NOT_FOUND = "trigger_type_not_found"
PAYLOAD_TOO_LARGE = "payload_too_large"
FUNCTION_NAMESPACE_CONFLICT = "FUNCTION_NAMESPACE_CONFLICT"
NOT_FOUND = "NOT_FOUND"
# Raised by SDKs locally, never sent by the engine.
TIMEOUT = "TIMEOUT"
SHUTDOWN = "SHUTDOWN"
UNKNOWN = "UNKNOWN"


class PyiiiError(Exception):
    """Root of every pyiii exception."""


class InvocationError(PyiiiError):
    """A call failed: the function raised, was not found, timed out, or its worker went away."""

    def __init__(
        self,
        code: str,
        message: str,
        function_id: str | None = None,
        stacktrace: str | None = None,
        invocation_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.function_id = function_id
        self.stacktrace = stacktrace
        self.invocation_id = invocation_id

    def body(self) -> dict[str, Any]:
        """The wire ErrorBody (§3.12)."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.stacktrace:
            out["stacktrace"] = self.stacktrace
        return out

    def __repr__(self) -> str:
        return (
            f"InvocationError(code={self.code!r}, message={self.message!r}, function_id={self.function_id!r})"
        )


class RegistrationRejectedError(InvocationError):
    """The engine refused this worker for good (any ``registrationrejected`` code but the namespace one)."""

    def __init__(self, code: str, message: str, function_id: str | None = None, namespace: str | None = None):
        super().__init__(code, message, function_id)
        self.namespace = namespace


class TriggerRegistrationError(PyiiiError):
    """A trigger provider rejected a binding (its config is invalid)."""

    def __init__(self, message: str, code: str = TRIGGER_REGISTRATION_FAILED) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def deserialization_error(function_id: str, reason: str) -> InvocationError:
    return InvocationError(
        DESERIALIZATION_ERROR, f"Failed to deserialize input for {function_id}: {reason}", function_id
    )
