"""Decoding of the state functions' inputs, with serde-style error details (spec/state.md §3.2).

Decoding is the only input validation (besides ``max_value_bytes`` and the page limits). Each decoder
takes the payload as received and returns its fields, or raises :class:`RequestError` whose
``detail`` follows ``Failed to deserialize input for <function id>: `` in the wire message. Unknown
fields are ignored (§3.1 rule 2). Details follow the §3.2 table: a wrong type of ``scope``, ``key`` or
``ops`` is serde's bare text (``invalid type: integer `1`, expected a string``), the paging fields
are prefixed with their name (``limit: ...``), and problems inside an op carry its location
(``ops[0].by: ...``).
"""

from __future__ import annotations

from typing import Any, Final

from .ops import Op, OpsDecodeError, decode_ops, invalid_type

#: 2^64 - 1: the largest ``usize`` of the reference.
_USIZE_MAX: Final = 2**64 - 1

#: The reference's struct names, used in ``expected struct <Name>`` details.
SET_INPUT: Final = "StateSetInput"
GET_INPUT: Final = "StateGetInput"
DELETE_INPUT: Final = "StateDeleteInput"
UPDATE_INPUT: Final = "StateUpdateInput"
GROUP_INPUT: Final = "StateGetGroupInput"
PAGE_INPUT: Final = "StateListPageInput"
GROUPS_INPUT: Final = "StateListGroupsInput"


class RequestError(ValueError):
    """The payload does not decode; ``detail`` is the serde-style text (§3.2 rules 1-2)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def object_input(data: Any, struct: str) -> dict[str, Any]:
    """``data`` as an object, else ``invalid type: ..., expected struct <struct>``."""
    if isinstance(data, dict):
        return data
    raise RequestError(invalid_type(data, f"struct {struct}"))


def string_field(obj: dict[str, Any], name: str) -> str:
    """A required string field (a ``str`` subclass becomes a plain ``str``)."""
    try:
        value = obj[name]
    except KeyError:
        raise RequestError(f"missing field `{name}`") from None
    if type(value) is not str:
        if not isinstance(value, str):
            raise RequestError(invalid_type(value, "a string"))
        value = str(value)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from an in-process caller; JSON cannot carry it
            raise RequestError(f"{name}: invalid unicode code point") from None
    return value


def required_field(obj: dict[str, Any], name: str) -> Any:
    """A field that must be present (it may be ``null``)."""
    if name not in obj:
        raise RequestError(f"missing field `{name}`")
    return obj[name]


def ops_field(obj: dict[str, Any]) -> tuple[Op, ...]:
    """The required ``ops`` array; one op that does not decode rejects the request (§3.2 rule 3)."""
    try:
        return decode_ops(required_field(obj, "ops"))
    except OpsDecodeError as exc:
        raise RequestError(exc.detail) from None


def scope_key(data: Any, struct: str) -> tuple[str, str]:
    """``{scope, key}`` of ``state::get`` and ``state::delete``."""
    obj = object_input(data, struct)
    return string_field(obj, "scope"), string_field(obj, "key")


def scope_only(data: Any, struct: str = GROUP_INPUT) -> str:
    """``{scope}`` of ``state::list`` and ``state::list_keys``."""
    return string_field(object_input(data, struct), "scope")


def set_input(data: Any) -> tuple[str, str, Any]:
    """``{scope, key, value}`` with ``data`` accepted instead of ``value`` (§5.1)."""
    obj = object_input(data, SET_INPUT)
    scope, key = string_field(obj, "scope"), string_field(obj, "key")
    if "value" in obj:
        if "data" in obj:
            raise RequestError("duplicate field `value`")
        return scope, key, obj["value"]
    if "data" in obj:
        return scope, key, obj["data"]
    raise RequestError("missing field `value`")


def update_input(data: Any) -> tuple[str, str, tuple[Op, ...]]:
    """``{scope, key, ops}``; one op that does not decode rejects the request (§3.2 rule 3)."""
    obj = object_input(data, UPDATE_INPUT)
    scope, key = string_field(obj, "scope"), string_field(obj, "key")
    return scope, key, ops_field(obj)


def page_input(data: Any) -> tuple[str, str | None, int | None]:
    """``{scope, cursor?, limit?}`` of ``state::list_entries``; ``null`` means absent (§5.7)."""
    obj = object_input(data, PAGE_INPUT)
    scope = string_field(obj, "scope")
    cursor = obj.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise RequestError(f"cursor: {invalid_type(cursor, 'a string')}")
    limit = obj.get("limit")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise RequestError(f"limit: {invalid_type(limit, 'usize')}")
        if not 0 <= limit <= _USIZE_MAX:
            raise RequestError(f"limit: invalid value: integer `{limit}`, expected usize")
    return scope, cursor, limit


def groups_input(data: Any) -> None:
    """``{}`` of ``state::list_groups``; ``null`` does not decode (§5.8)."""
    object_input(data, GROUPS_INPUT)


__all__ = [
    "RequestError",
    "groups_input",
    "object_input",
    "ops_field",
    "page_input",
    "required_field",
    "scope_key",
    "scope_only",
    "set_input",
    "string_field",
    "update_input",
]
