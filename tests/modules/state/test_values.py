"""The canonical value encoding (spec/state.md §3.3, §3.4): pyiii.modules.state.values."""

from __future__ import annotations

from typing import Any

import pytest

from pyiii.modules.state.values import InvalidValue, decode_value, encode_value


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (-(2**63), -(2**63)),  # the ends of the exact range stay integers
        (2**64 - 1, 2**64 - 1),
        (-(2**63) - 1, float(-(2**63) - 1)),  # 19 digits, one past the lower end
        (2**64, float(2**64)),
        ([1, {"deep": [10**25]}], [1, {"deep": [1e25]}]),
    ],
)
def test_integers_outside_the_exact_range_become_doubles(value: Any, stored: Any) -> None:
    decoded = decode_value(encode_value(value))
    assert decoded == stored
    assert type(decoded) is type(stored)


def test_long_digit_runs_in_strings_and_keys_are_left_alone() -> None:
    """Only numbers are normalised: 19+ digits inside a string or a key are text."""
    value = {"12345678901234567890123": "id-98765432109876543210", "n": 7, "none": None}
    assert decode_value(encode_value(value)) == value


def test_keys_are_sorted_and_output_is_compact() -> None:
    assert encode_value({"b": 1, "a": [True, None]}) == b'{"a":[true,null],"b":1}'


@pytest.mark.parametrize("bad", [float("nan"), {"x": [float("inf")]}, 10**400, object()])
def test_what_json_cannot_hold_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidValue):
        encode_value(bad)
