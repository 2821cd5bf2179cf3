"""Errors of the stream module and their wire codes (spec/stream.md §4.2, §6).

    PyiiiError
    ├── StateError                 (state/errors.py) raised by the shared storage adapters
    │   ├── StoreError(message)    an adapter failed; becomes the function's STREAM_*_ERROR
    │   └── StateStartupError      the store cannot be opened; the engine does not start
    └── BusError                   (bus.py) an event could not be emitted (Redis publish failed)

Every wire error is built here: :func:`store_error` for adapter failures, :func:`custom_error` for a
custom implementation's failures, :func:`json_error` for its malformed results.
"""

from __future__ import annotations

from typing import Final

from pyiii.protocol.errors import InvocationError

SET: Final = "stream::set"
GET: Final = "stream::get"
DELETE: Final = "stream::delete"
LIST: Final = "stream::list"
LIST_GROUPS: Final = "stream::list_groups"
LIST_ALL: Final = "stream::list_all"
SEND: Final = "stream::send"
UPDATE: Final = "stream::update"

JSON_ERROR: Final = "JSON_ERROR"

#: function id -> (error code, message prefix) of an adapter failure (§4.2).
FAILURES: Final[dict[str, tuple[str, str]]] = {
    SET: ("STREAM_SET_ERROR", "Failed to set stream item"),
    GET: ("STREAM_GET_ERROR", "Failed to get stream item"),
    DELETE: ("STREAM_DELETE_ERROR", "Failed to delete stream item"),
    LIST: ("STREAM_GET_GROUP_ERROR", "Failed to get stream group"),
    LIST_GROUPS: ("STREAM_LIST_GROUPS_ERROR", "Failed to list stream groups"),
    LIST_ALL: ("STREAM_LIST_ALL_ERROR", "Failed to list streams"),
    SEND: ("STREAM_SEND_ERROR", "Failed to send stream event"),
    UPDATE: ("STREAM_UPDATE_ERROR", "Failed to update stream item"),
}


def store_error(function_id: str, detail: str) -> InvocationError:
    """An adapter (or, for ``send``, the bus) failed: the function's code, the adapter's text."""
    code, prefix = FAILURES[function_id]
    return InvocationError(code, f"{prefix}: {detail}", function_id)


def custom_error(function_id: str, detail: str) -> InvocationError:
    """A custom ``set``/``update``/``delete`` failed or returned nothing (§6 rule 4)."""
    code, _ = FAILURES[function_id]
    return InvocationError(code, detail, function_id)


def json_error(function_id: str, detail: str) -> InvocationError:
    """A custom ``set``/``update``/``delete`` returned a malformed result (§6 rule 4)."""
    return InvocationError(JSON_ERROR, f"Failed to convert result to value: {detail}", function_id)


__all__ = [
    "DELETE",
    "FAILURES",
    "GET",
    "JSON_ERROR",
    "LIST",
    "LIST_ALL",
    "LIST_GROUPS",
    "SEND",
    "SET",
    "UPDATE",
    "custom_error",
    "json_error",
    "store_error",
]
