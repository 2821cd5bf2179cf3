"""Run a coroutine eagerly up to its first suspension (Python 3.11 has no eager tasks).

The engine runs ``taskless`` built-in functions this way (``stream::send`` and ``engine::log::*``
never suspend; a durable ``state::set`` only for its commit; see ``ModuleHost.register_function``)
and the state module starts conditional trigger deliveries so: a task per call was a measurable
share of the engine's time (bench/RESULTS.md, todo_e2e). When the
coroutine does suspend, the returned awaitable finishes it exactly as ``await`` would (:func:`finish`
runs it as a task, :meth:`Resume.drive` without one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from typing import Any

log = logging.getLogger("pyiii.engine")


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

    def drive(self) -> None:
        """Finish the coroutine without a task: each future it awaits resumes it from that future's
        done-callback (a task per durable write was a measurable share of the engine's time).

        Only for coroutines that await nothing but futures and never need a task of their own
        (``asyncio.current_task``, ``asyncio.timeout``): the engine's writes to a local store, which
        wait for their commit. They must handle their own exceptions: one that escapes (a
        cancelled future it awaited) is logged, as a task nobody awaits would log it."""
        self._park(self._suspended_on)

    def _step(self, _done: Any = None, error: BaseException | None = None) -> None:
        try:
            value = self._coro.send(None) if error is None else self._coro.throw(error)
        except StopIteration:
            return
        except asyncio.CancelledError:
            log.debug("a driven coroutine ended by cancellation: %r", self._coro)
            return
        except Exception:
            log.exception("a driven coroutine failed: %r", self._coro)
            return
        self._park(value)

    def _park(self, value: Any) -> None:
        if getattr(value, "_asyncio_future_blocking", None):  # `await future`: resume when it is done
            value._asyncio_future_blocking = False
            value.add_done_callback(self._step)
        elif value is None:  # a bare yield (`asyncio.sleep(0)`): resume in the next loop iteration
            asyncio.get_running_loop().call_soon(self._step)
        else:  # what a task does with a bad yield
            self._step(error=RuntimeError(f"a driven coroutine yielded {value!r}, which is not a future"))


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
