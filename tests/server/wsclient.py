"""A websocket test client that understands batched frames."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType


async def messages(ws: ClientWebSocketResponse, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The messages of the next frame (a frame is one object or an array of them)."""
    frame = await ws.receive(timeout=timeout)
    if frame.type != WSMsgType.TEXT:
        raise ConnectionError(f"websocket frame {frame.type!r}: {frame.data!r}")
    data = json.loads(frame.data)
    return data if isinstance(data, list) else [data]


async def collect_until(
    ws: ClientWebSocketResponse, done: Any, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Every message until `done(message)` is true, or fail after `timeout`."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            for message in await messages(ws, timeout):
                seen.append(message)
                if done(message):
                    return seen


def is_final_status(message: dict[str, Any]) -> bool:
    return message["type"] == "status" and message["status"] in {"completed", "failed", "cancelled"}
