"""The end of a job's output, the one sequence for the server and `transcriptor transcribe`.

A job is over when its program is: once the leader has exited, its output gets a moment
to end; if processes it left behind still hold it open, they are stopped, and if the
output is still open after another moment (held by something we may not signal), we let
go of the pipe and the reader finishes with what arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from server.executors.base import Executor, H

# How long output may keep flowing once the program has exited, before what holds it open
# is stopped, and again before the pipe is let go.
OUTPUT_DRAIN_SECONDS = 2.0


async def drain(
    executor: Executor[H],
    handle: H,
    reading: asyncio.Task[None],
    *,
    leftovers: Callable[[], Awaitable[None]],
) -> None:
    """Wait for `reading` (the job's line stream) to end, ending it as above once the
    leader has exited; `leftovers()` stops what still holds the output open."""
    exited = asyncio.ensure_future(executor.exited(handle))
    try:
        await asyncio.wait({reading, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():
            await exited  # an error finding out is the job's error
            if not await _ends_within(reading):
                await leftovers()
                if not await _ends_within(reading):
                    executor.close_output(handle)
        await reading
    finally:
        exited.cancel()
        await asyncio.gather(exited, return_exceptions=True)


async def _ends_within(reading: asyncio.Task[Any]) -> bool:
    done, _ = await asyncio.wait({reading}, timeout=OUTPUT_DRAIN_SECONDS)
    return bool(done)
