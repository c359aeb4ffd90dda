"""/api/health of an in-process app, and waiting on the counts it reports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def health(client: Any) -> dict[str, Any]:
    return dict(await (await client.get("/api/health")).json())


async def health_until(
    client: Any, done: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    """Poll /api/health until `done(body)`; the body that satisfied it."""
    async with asyncio.timeout(timeout):
        while not done(body := await health(client)):
            await asyncio.sleep(0.02)
    return body
