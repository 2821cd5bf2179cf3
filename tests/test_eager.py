"""pyiii._eager: a coroutine started by hand (start_eagerly) and finished by a task or driven from
the done-callbacks of the futures it awaits (Resume.drive)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pyiii._eager import finish, start_eagerly


async def test_start_eagerly_runs_a_coroutine_that_never_suspends_to_the_end() -> None:
    seen: list[str] = []

    async def quick() -> None:
        seen.append("ran")

    assert start_eagerly(quick()) is None
    assert seen == ["ran"]


async def test_drive_finishes_a_coroutine_across_several_futures_without_a_task() -> None:
    """Each awaited future resumes the coroutine from its done-callback: results and exceptions of
    the futures reach it as `await` delivers them, a bare yield resumes it in the next iteration, and
    no task exists while it waits."""
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    seen: list[Any] = []

    async def body() -> None:
        seen.append(await first)
        try:
            await second
        except KeyError as exc:
            seen.append(("caught", exc.args[0]))
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())  # no task: it runs from callbacks

    rest = start_eagerly(body())
    assert rest is not None and seen == []
    tasks_before = len(asyncio.all_tasks())
    rest.drive()
    assert len(asyncio.all_tasks()) == tasks_before
    first.set_result(1)
    await asyncio.sleep(0)
    assert seen == [1]
    second.set_exception(KeyError("k"))
    for _ in range(3):
        await asyncio.sleep(0)
    assert seen == [1, ("caught", "k"), None]


async def test_drive_logs_an_exception_that_escapes(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    gate = loop.create_future()

    async def body() -> None:
        await gate
        raise ValueError("after the suspension")

    rest = start_eagerly(body())
    assert rest is not None
    rest.drive()
    with caplog.at_level(logging.ERROR, logger="pyiii.engine"):
        gate.set_result(None)
        await asyncio.sleep(0)
    assert any("after the suspension" in (r.exc_text or "") for r in caplog.records)


async def test_drive_throws_into_a_coroutine_that_yields_something_other_than_a_future() -> None:
    """As a task does with a bad yield: RuntimeError raised at the yield, which the coroutine sees."""
    seen: list[str] = []

    class Odd:
        def __await__(self) -> Any:
            yield "not a future"

    async def body() -> None:
        try:
            await Odd()
        except RuntimeError as exc:
            seen.append(str(exc))

    rest = start_eagerly(body())
    assert rest is not None
    rest.drive()
    assert seen and "not a future" in seen[0]


async def test_finish_runs_the_rest_as_a_task() -> None:
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    seen: list[Any] = []

    async def body() -> str:
        seen.append(await gate)
        seen.append(asyncio.current_task() is not None)
        return "done"

    rest = start_eagerly(body())
    assert rest is not None
    task = loop.create_task(finish(rest))
    gate.set_result("value")
    await task
    assert seen == ["value", True]
