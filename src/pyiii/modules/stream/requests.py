"""Decoding of the stream functions' inputs (spec/stream.md §4.1, §4.3; state.md §3.2 for the details).

Each decoder takes the payload as received and returns typed fields, or raises :class:`RequestError`
whose ``detail`` follows ``Failed to deserialize input for <function id>: `` in the wire message.
Unknown fields are ignored (§4.1 rule 1). Names in ``expected struct <Name>`` details are the
reference's input structs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pyiii.modules.state.ops import Op, OpsDecodeError, decode_ops, invalid_type

SET_INPUT: Final = "StreamSetInput"
GET_INPUT: Final = "StreamGetInput"
DELETE_INPUT: Final = "StreamDeleteInput"
LIST_INPUT: Final = "StreamGetGroupInput"
LIST_GROUPS_INPUT: Final = "StreamListGroupsInput"
LIST_ALL_INPUT: Final = "StreamListAllInput"
SEND_INPUT: Final = "StreamSendInput"
UPDATE_INPUT: Final = "StreamUpdateInput"


class RequestError(ValueError):
    """The payload does not decode; ``detail`` is the serde-style text."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ItemRef:
    stream_name: str
    group_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class SendInput:
    stream_name: str
    group_id: str
    event_type: str
    data: Any
    item_id: str | None


def _object(data: Any, struct: str) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    raise RequestError(invalid_type(data, f"struct {struct}"))


def _string(obj: dict[str, Any], name: str) -> str:
    try:
        value = obj[name]
    except KeyError:
        raise RequestError(f"missing field `{name}`") from None
    if not isinstance(value, str):
        raise RequestError(invalid_type(value, "a string"))
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from an in-process caller; JSON cannot carry it
            raise RequestError(f"{name}: invalid unicode code point") from None
    return str(value)


def _required(obj: dict[str, Any], name: str) -> Any:
    if name not in obj:
        raise RequestError(f"missing field `{name}`")
    return obj[name]


def item_ref(data: Any, struct: str) -> ItemRef:
    """``{stream_name, group_id, item_id}`` of get and delete."""
    obj = _object(data, struct)
    return ItemRef(_string(obj, "stream_name"), _string(obj, "group_id"), _string(obj, "item_id"))


def set_input(data: Any) -> tuple[ItemRef, Any]:
    """``{stream_name, group_id, item_id, data}``; ``data`` is required and may be ``null`` (§4.1 rule 3)."""
    obj = _object(data, SET_INPUT)
    ref = ItemRef(_string(obj, "stream_name"), _string(obj, "group_id"), _string(obj, "item_id"))
    return ref, _required(obj, "data")


def group_ref(data: Any) -> tuple[str, str]:
    """``{stream_name, group_id}`` of ``stream::list``."""
    obj = _object(data, LIST_INPUT)
    return _string(obj, "stream_name"), _string(obj, "group_id")


def stream_only(data: Any) -> str:
    """``{stream_name}`` of ``stream::list_groups``."""
    return _string(_object(data, LIST_GROUPS_INPUT), "stream_name")


def list_all_input(data: Any) -> None:
    """Any object; ``null`` does not decode (§4.3.6)."""
    _object(data, LIST_ALL_INPUT)


def send_input(data: Any) -> SendInput:
    """``{stream_name, group_id, type | event_type, data, id?}`` (§4.3.7, S2)."""
    obj = _object(data, SEND_INPUT)
    stream_name, group_id = _string(obj, "stream_name"), _string(obj, "group_id")
    if "type" in obj:
        event_type = _string(obj, "type")
    elif "event_type" in obj:  # S2: the alias is used only when `type` is absent
        event_type = _string(obj, "event_type")
    else:
        raise RequestError("missing field `type`")
    payload = _required(obj, "data")
    item_id = obj.get("id")
    if item_id is not None:
        if not isinstance(item_id, str):
            raise RequestError(f"id: {invalid_type(item_id, 'a string')}")
        item_id = _string(obj, "id")
    return SendInput(stream_name, group_id, event_type, payload, item_id)


def update_input(data: Any) -> tuple[ItemRef, tuple[Op, ...]]:
    """``{stream_name, group_id, item_id, ops}``; one op that does not decode rejects the request."""
    obj = _object(data, UPDATE_INPUT)
    ref = ItemRef(_string(obj, "stream_name"), _string(obj, "group_id"), _string(obj, "item_id"))
    raw = _required(obj, "ops")
    try:
        ops = decode_ops(raw)
    except OpsDecodeError as exc:
        raise RequestError(exc.detail) from None
    return ref, ops


__all__ = [
    "DELETE_INPUT",
    "GET_INPUT",
    "ItemRef",
    "RequestError",
    "SendInput",
    "group_ref",
    "item_ref",
    "list_all_input",
    "send_input",
    "set_input",
    "stream_only",
    "update_input",
]
