"""Reconnect backoff: a pure generator of delays (spec/protocol.md §10.5 rule 7)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from pyiii.sdk.backoff import backoff_delays
from pyiii.sdk.types import ReconnectionConfig


def test_delays_double_until_the_cap_without_jitter() -> None:
    """With the jitter at its midpoint the delays are initial · multiplier^attempt, capped at max."""
    delays = backoff_delays(ReconnectionConfig(), rand=lambda: 0.5)
    assert list(itertools.islice(delays, 8)) == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_jitter_spans_plus_minus_the_factor() -> None:
    """rand=0 gives delay·(1-jitter), rand=1 gives delay·(1+jitter)."""
    config = ReconnectionConfig(initial_delay_ms=1000, jitter_factor=0.3)
    assert next(backoff_delays(config, rand=lambda: 0.0)) == 0.7
    assert next(backoff_delays(config, rand=lambda: 1.0)) == 1.3


def test_retries_forever_by_default() -> None:
    """max_retries=-1 never ends the generator."""
    delays = backoff_delays(ReconnectionConfig(), rand=lambda: 0.5)
    assert len(list(itertools.islice(delays, 10_000))) == 10_000


def test_max_retries_bounds_the_attempts() -> None:
    """The generator ends after max_retries delays: the caller then gives up."""
    assert len(list(backoff_delays(ReconnectionConfig(max_retries=3)))) == 3
    assert list(backoff_delays(ReconnectionConfig(max_retries=0))) == []


def test_a_fresh_generator_starts_over() -> None:
    """Resetting after a successful connect is starting a new generator."""
    config = ReconnectionConfig(initial_delay_ms=10, jitter_factor=0)
    first = backoff_delays(config)
    next(first), next(first), next(first)
    assert next(backoff_delays(config)) == 0.01


@given(
    initial=st.integers(0, 100_000),
    maximum=st.integers(0, 100_000),
    multiplier=st.floats(1.0, 10.0),
    jitter=st.floats(0.0, 1.0),
    rand=st.floats(0.0, 1.0),
)
def test_delays_are_never_negative_nor_beyond_the_jittered_cap(
    initial: int, maximum: int, multiplier: float, jitter: float, rand: float
) -> None:
    """Every delay lies in [0, max·(1+jitter)], even after many attempts."""
    config = ReconnectionConfig(initial, maximum, multiplier, jitter, max_retries=200)
    for delay in backoff_delays(config, rand=lambda: rand):
        assert 0.0 <= delay <= maximum * (1 + jitter) / 1000 + 1e-9
