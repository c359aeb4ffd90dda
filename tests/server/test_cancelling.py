"""Cancelling an owned task must not eat the cancellation of whoever waits for it."""

from __future__ import annotations

import asyncio

import pytest

from server.app import _owned_task
from server.tasks import cancel_and_wait


async def slow_to_stop(started: asyncio.Event, stopping: asyncio.Event, release: asyncio.Event) -> None:
    started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        stopping.set()
        await release.wait()  # a teardown that takes a while
        raise


async def test_owned_task_teardown_keeps_the_callers_cancellation() -> None:
    started, stopping, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    went_on: list[str] = []

    async def caller() -> None:
        async with _owned_task(slow_to_stop(started, stopping, release), "slow"):
            await started.wait()
        went_on.append("after the block")  # only if its own cancel was swallowed
        await asyncio.sleep(0)

    task = asyncio.create_task(caller())
    async with asyncio.timeout(10):
        await stopping.wait()
    task.cancel()  # the app shutting down, say, while the owned task is stopping
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert went_on == []


async def test_cancel_and_wait_swallows_only_the_childs_cancellation() -> None:
    started, stopping, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    child = asyncio.create_task(slow_to_stop(started, stopping, release))
    await started.wait()
    release.set()
    await cancel_and_wait(child)  # returns: the child's CancelledError is expected
    assert child.cancelled()
