"""Errors of the state module and their wire codes (spec/state.md §3.5).

    PyiiiError
    └── StateError
        ├── StoreError(message)              an adapter failed (driver errors are translated to it)
        │   └── StoreUnavailable(message)    the backend cannot be reached (e.g. Redis is down)
        ├── ValueTooLarge(size, limit)       a value over max_value_bytes
        └── StateStartupError(message)       the store cannot be opened; the engine does not start

Adapters raise only :class:`StoreError` (``from`` the driver exception). The module turns an error
into the wire ``{code, message}`` in one place, :func:`call_error`: a store failure gets the code of
the function that hit it (``SET_ERROR``, ``GET_ERROR``, ...).
"""

from __future__ import annotations

from typing import Final

from pyiii.protocol.errors import InvocationError, PyiiiError

VALUE_TOO_LARGE: Final = "VALUE_TOO_LARGE"
INVALID_PAGE_LIMITS: Final = "INVALID_PAGE_LIMITS"
INVALID_CURSOR: Final = "INVALID_CURSOR"

#: function id -> (error code, message prefix) of a store failure (§3.5).
STORE_FAILURES: Final[dict[str, tuple[str, str]]] = {
    "state::set": ("SET_ERROR", "Failed to set value"),
    "state::get": ("GET_ERROR", "Failed to get value"),
    "state::delete": ("DELETE_ERROR", "Failed to delete value"),
    "state::update": ("UPDATE_ERROR", "Failed to update value"),
    "state::list": ("LIST_ERROR", "Failed to list values"),
    "state::list_keys": ("LIST_KEYS_ERROR", "Failed to list keys"),
    "state::list_entries": ("LIST_ENTRIES_ERROR", "Failed to list entries"),
    "state::list_groups": ("LIST_GROUPS_ERROR", "Failed to list groups"),
}


class StateError(PyiiiError):
    """Root of the state module's errors."""


class StoreError(StateError):
    """An adapter could not complete an operation; nothing was written."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StoreUnavailable(StoreError):
    """The backend is unreachable right now; the call may succeed once it is back."""


class ValueTooLarge(StateError):
    """The value to store is larger than ``max_value_bytes`` (§5.1 step 1, D9)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"value of {size} bytes exceeds the configured max_value_bytes limit of {limit}")
        self.size = size
        self.limit = limit


class StateStartupError(StateError, OSError):
    """The store cannot be opened (§9.2 rules 6 and 7).

    Also an ``OSError``: the server reports those as ``pyiii: failed to start: ...`` and exits 1, like a
    port that cannot be bound.
    """

    def __init__(self, message: str) -> None:
        StateError.__init__(self, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def call_error(function_id: str, exc: StateError) -> InvocationError:
    """The wire error of a failed state call."""
    if isinstance(exc, ValueTooLarge):
        return InvocationError(VALUE_TOO_LARGE, str(exc), function_id)
    code, prefix = STORE_FAILURES[function_id]
    return InvocationError(code, f"{prefix}: {exc}", function_id)


__all__ = [
    "INVALID_CURSOR",
    "INVALID_PAGE_LIMITS",
    "VALUE_TOO_LARGE",
    "StateError",
    "StateStartupError",
    "StoreError",
    "StoreUnavailable",
    "ValueTooLarge",
    "call_error",
]
