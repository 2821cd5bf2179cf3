"""Reconnect backoff as a pure generator of delays (STYLE habit 10, spec/protocol.md §10.5 rule 7).

The reconnect loop asks the generator for the next delay before each retry and starts a fresh
generator after every successful connect, which is the "reset" of the spec. The random source is
injected so tests are deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from pyiii.sdk.types import ReconnectionConfig

__all__ = ["backoff_delays"]


def backoff_delays(config: ReconnectionConfig, rand: Callable[[], float] = random.random) -> Iterator[float]:
    """Delays in seconds before retry 1, 2, ...: ``min(initial · multiplier^attempt, max)`` ± jitter.

    The jitter is uniform in ``±jitter_factor`` of the capped delay; a delay is never negative. The
    generator ends after ``max_retries`` delays (never when ``max_retries`` is negative): the caller
    then gives up (state ``failed``).
    """
    attempt = 0
    while config.max_retries < 0 or attempt < config.max_retries:
        # Cap the exponent's growth so a long outage never overflows the float.
        capped = min(
            config.initial_delay_ms * config.backoff_multiplier ** min(attempt, 64), config.max_delay_ms
        )
        jitter = capped * config.jitter_factor * (2.0 * rand() - 1.0)
        yield max(0.0, capped + jitter) / 1000.0
        attempt += 1
