"""A write whose caller left still ends somewhere a person can see: the log."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

import pytest

from server.store import Store


async def test_failed_write_of_a_caller_that_left_is_logged(store: Store, caplog: Any) -> None:
    started, go_on = asyncio.Event(), asyncio.Event()

    async def body(db: Any) -> None:
        started.set()
        await go_on.wait()
        await db.execute("INSERT INTO no_such_table VALUES (1)")

    caller = asyncio.create_task(store._write(body))
    await started.wait()
    caller.cancel()  # a handler whose client hung up
    with pytest.raises(asyncio.CancelledError):
        await caller
    with caplog.at_level(logging.ERROR, logger="server.store.store"):
        go_on.set()
        async with asyncio.timeout(10):
            while not caplog.records:
                await asyncio.sleep(0.01)
    (record,) = caplog.records
    assert "caller left" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], sqlite3.OperationalError)
    # The connection is usable afterwards.
    assert await store.list_jobs() == []


async def test_failed_write_of_a_caller_that_waits_is_raised_not_logged(store: Store, caplog: Any) -> None:
    async def body(db: Any) -> None:
        await db.execute("INSERT INTO no_such_table VALUES (1)")

    with caplog.at_level(logging.ERROR, logger="server.store.store"):
        with pytest.raises(sqlite3.OperationalError):
            await store._write(body)
    assert caplog.records == []
