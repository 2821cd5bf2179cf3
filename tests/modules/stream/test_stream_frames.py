"""The pure wire protocol and scope encoding, byte for byte (spec/stream.md §3.5, §3.6, §7; S12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyiii.modules.stream import frames
from pyiii.modules.stream.store import parse_scope, scope_of


def test_stream_frame_key_order_and_null_id() -> None:
    """§3.6: wrapper keys in the spec's order, ``id`` present when null, non-ASCII not escaped."""
    event = frames.change_event(frames.UPDATE, b'{"status":"closed"}')
    assert frames.stream_frame(1755781234567, "orders", "group-a", "item-1", event) == (
        b'{"type":"stream","timestamp":1755781234567,"streamName":"orders","groupId":"group-a","id":"item-1",'
        b'"event":{"type":"update","data":{"status":"closed"}}}'
    )
    assert frames.stream_frame(1, "é", 'g"', None, frames.sync_group_event(b"[1]")) == (
        '{"type":"stream","timestamp":1,"streamName":"é","groupId":"g\\"","id":null,'
        '"event":{"type":"sync","data":[1]}}'.encode()
    )


def test_event_variants() -> None:
    """§3.6 table: sync (item, missing item), custom event, unauthorized."""
    assert frames.sync_item_event(None) == b'{"type":"sync","data":null}'
    assert frames.sync_item_event(b"null") == b'{"type":"sync","data":null}'
    assert frames.custom_event("typing", b'{"user":"a"}') == (
        b'{"type":"event","event":{"type":"typing","data":{"user":"a"}}}'
    )
    assert frames.UNAUTHORIZED_EVENT == b'{"type":"unauthorized"}'


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_ws_text_frame_header(size: int) -> None:
    """RFC 6455 §5.2: an unmasked final text frame with the 7-, 16- or 64-bit length."""
    frame = frames.ws_text_frame(b"x" * size)
    assert frame[0] == 0x81
    if size < 126:
        assert frame[1] == size and len(frame) == 2 + size
    elif size < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == size
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == size


def test_close_frame() -> None:
    """RFC 6455 §5.5.1: opcode 8, the code in network order, then the reason."""
    assert frames.ws_close_frame(1013, b"slow consumer") == b"\x88\x0f\x03\xf5slow consumer"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"type":"join","data":{"subscriptionId":"s","streamName":"a","groupId":"b"}}',
            frames.Join("s", "a", "b", None),
        ),
        (
            '{"type":"join","data":{"subscriptionId":"","streamName":"","groupId":"","id":"i","x":1}}',
            frames.Join("", "", "", "i"),
        ),
        (
            '{"type":"leave","data":{"subscriptionId":"s","streamName":"a","groupId":"b","id":null}}',
            frames.Leave("s", "a", "b", None),
        ),
        ('{"type":"ping","extra":[1]}', frames.PING),
        ("   ", frames.BLANK),
    ],
)
def test_parse_accepted(text: str, expected: object) -> None:
    """§3.5: joins, leaves (id string, null or absent; unknown fields ignored), pings, blank text."""
    assert frames.parse_client_message(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "not-json",
        "[1]",
        '{"type":"JOIN","data":{"subscriptionId":"s","streamName":"a","groupId":"b"}}',
        '{"type":"join","data":{"subscriptionId":"s","streamName":"a"}}',
        '{"type":"join","data":{"subscriptionId":"s","streamName":"a","groupId":1}}',
        '{"type":"join","data":{"subscriptionId":"s","streamName":"a","groupId":"b","id":2}}',
        '{"type":"join","data":[]}',
        b"\xff",
    ],
)
def test_parse_ignored(text: str | bytes) -> None:
    """§3.5: wrong case, missing or mistyped fields, non-objects and undecodable bytes are ignored."""
    message = frames.parse_client_message(text)
    assert isinstance(message, frames.Ignored) and message.reason


@given(st.text(), st.text())
def test_scope_encoding_round_trips(stream: str, group: str) -> None:
    """S12: ``(stream, group)`` -> scope -> the same pair, for any names (``:`` included)."""
    assert parse_scope(scope_of(stream, group)) == (stream, group)


def test_scope_encoding_is_unambiguous() -> None:
    """S12: stream ``a`` group ``b:g`` and stream ``a:b`` group ``g`` are different scopes; foreign scopes
    do not parse."""
    assert scope_of("a", "b:g") != scope_of("a:b", "g")
    assert parse_scope("plain-state-scope") is None
    assert parse_scope("9:short") is None
