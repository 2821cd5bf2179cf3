"""pyiii._ids: the UUID-v4-shaped ids of invocations and channels."""

from __future__ import annotations

import uuid

from pyiii._ids import COUNTER_START, id_source


def test_ids_are_uuid4_shaped_and_count_from_one() -> None:
    prefix, counter = id_source()
    ids = [prefix + hex(next(counter))[3:] for _ in range(3)]
    assert ids == [f"{prefix}{n:012x}" for n in (1, 2, 3)]
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_the_slice_is_twelve_hex_digits_over_the_whole_counter_range() -> None:
    for n in (COUNTER_START, COUNTER_START + 1, COUNTER_START + 0xABCDEF, 2 * COUNTER_START - 1):
        assert hex(n)[3:] == f"{n - COUNTER_START:012x}"


def test_each_source_has_its_own_prefix() -> None:
    assert len({id_source()[0] for _ in range(20)}) == 20
