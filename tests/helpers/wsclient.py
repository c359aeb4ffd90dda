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


async def stalled_socket(host: str, port: int, first_message: dict[str, Any]) -> asyncio.StreamWriter:
    """A websocket client that sends one message and then never reads.

    aiohttp's own client reads every frame into memory, so the server never sees it stall.
    This one upgrades by hand over a socket with a tiny receive buffer and an asyncio
    stream that stops reading once its small buffer is full, so the server's sends block.
    """
    import base64
    import os
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    status = await reader.readline()
    assert b" 101 " in status, status
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    payload = json.dumps(first_message).encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    await writer.drain()
    return writer
