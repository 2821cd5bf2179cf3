"""Decoding of the stream functions' inputs (spec/stream.md §4.1, §4.3; state.md §3.2 for the details).

Each decoder takes the payload as received and returns typed fields, or raises :class:`RequestError`
whose ``detail`` follows ``Failed to deserialize input for <function id>: `` in the wire message.
Unknown fields are ignored (§4.1 rule 1). Names in ``expected struct <Name>`` details are the
reference's input structs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pyiii.modules.state.ops import Op, invalid_type

# The field decoders (and their error texts) are the state module's: one serde-style vocabulary.
from pyiii.modules.state.requests import RequestError, object_input, ops_field, required_field, string_field

SET_INPUT: Final = "StreamSetInput"
GET_INPUT: Final = "StreamGetInput"
DELETE_INPUT: Final = "StreamDeleteInput"
LIST_INPUT: Final = "StreamGetGroupInput"
LIST_GROUPS_INPUT: Final = "StreamListGroupsInput"
LIST_ALL_INPUT: Final = "StreamListAllInput"
SEND_INPUT: Final = "StreamSendInput"
UPDATE_INPUT: Final = "StreamUpdateInput"


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


def item_ref(data: Any, struct: str) -> ItemRef:
    """``{stream_name, group_id, item_id}`` of get and delete."""
    obj = object_input(data, struct)
    return ItemRef(
        string_field(obj, "stream_name"), string_field(obj, "group_id"), string_field(obj, "item_id")
    )


def set_input(data: Any) -> tuple[ItemRef, Any]:
    """``{stream_name, group_id, item_id, data}``; ``data`` is required and may be ``null`` (§4.1 rule 3)."""
    obj = object_input(data, SET_INPUT)
    ref = ItemRef(
        string_field(obj, "stream_name"), string_field(obj, "group_id"), string_field(obj, "item_id")
    )
    return ref, required_field(obj, "data")


def group_ref(data: Any) -> tuple[str, str]:
    """``{stream_name, group_id}`` of ``stream::list``."""
    obj = object_input(data, LIST_INPUT)
    return string_field(obj, "stream_name"), string_field(obj, "group_id")


def stream_only(data: Any) -> str:
    """``{stream_name}`` of ``stream::list_groups``."""
    return string_field(object_input(data, LIST_GROUPS_INPUT), "stream_name")


def list_all_input(data: Any) -> None:
    """Any object; ``null`` does not decode (§4.3.6)."""
    object_input(data, LIST_ALL_INPUT)


def send_input(data: Any) -> SendInput:
    """``{stream_name, group_id, type | event_type, data, id?}`` (§4.3.7, S2)."""
    obj = object_input(data, SEND_INPUT)
    stream_name, group_id = string_field(obj, "stream_name"), string_field(obj, "group_id")
    if "type" in obj:
        event_type = string_field(obj, "type")
    elif "event_type" in obj:  # S2: the alias is used only when `type` is absent
        event_type = string_field(obj, "event_type")
    else:
        raise RequestError("missing field `type`")
    payload = required_field(obj, "data")
    item_id = obj.get("id")
    if item_id is not None:
        if not isinstance(item_id, str):
            raise RequestError(f"id: {invalid_type(item_id, 'a string')}")
        item_id = string_field(obj, "id")
    return SendInput(stream_name, group_id, event_type, payload, item_id)


def update_input(data: Any) -> tuple[ItemRef, tuple[Op, ...]]:
    """``{stream_name, group_id, item_id, ops}``; one op that does not decode rejects the request."""
    obj = object_input(data, UPDATE_INPUT)
    ref = ItemRef(
        string_field(obj, "stream_name"), string_field(obj, "group_id"), string_field(obj, "item_id")
    )
    return ref, ops_field(obj)


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
