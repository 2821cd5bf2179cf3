"""Run a coroutine eagerly up to its first suspension (Python 3.11 has no eager tasks).

The engine runs built-in functions this way (``stream::send`` and ``engine::log::*`` never suspend;
a durable ``state::set`` only for its commit) and the state module starts trigger deliveries so: a
task per call was a measurable share of the engine's time (bench/RESULTS.md, todo_e2e). When the
coroutine does suspend, the returned awaitable finishes it exactly as ``await`` would (:func:`finish`
runs it as a task).
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any


class Resume:
    """Awaiting it finishes a coroutine that was started by hand and suspended on ``suspended_on``
    (what ``yield from`` would do had the coroutine been awaited from the start)."""

    __slots__ = ("_coro", "_suspended_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], suspended_on: Any) -> None:
        self._coro = coro
        self._suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value = self._coro, self._suspended_on
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation: delivered to the coroutine, as a task would
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return


def start_eagerly(coro: Coroutine[Any, Any, Any]) -> Resume | None:
    """Run ``coro`` until it finishes (returns None) or suspends (returns the awaitable that finishes
    it). Exceptions raised before the first suspension propagate to the caller."""
    try:
        suspended_on = coro.send(None)
    except StopIteration:
        return None
    return Resume(coro, suspended_on)


async def finish(rest: Resume) -> None:
    """A coroutine that finishes what :func:`start_eagerly` started (to run as a task)."""
    await rest
