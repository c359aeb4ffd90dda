"""Cancelling a task the caller owns, without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has ended.

    Its CancelledError is the expected outcome and is swallowed, but a cancellation of the
    task running this (a shutdown, a timeout around us) goes on: `suppress(CancelledError)`
    here would eat it too (issue #14).
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
