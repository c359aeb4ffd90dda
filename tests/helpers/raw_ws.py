"""A websocket opened by hand, for the tests that play a misbehaving browser tab."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any


async def raw_ws_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket opened by hand on 127.0.0.1: no client library reading behind our back,
    so a test can stop reading (a stalled tab) or reset the connection (a killed one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:100]
    return reader, writer


def ws_text_frame(message: dict[str, Any]) -> bytes:
    """One masked client text frame (payload under 64 KB)."""
    payload = json.dumps(message).encode()
    assert len(payload) < 65536
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        header = bytes([0x81, 0x80 | len(payload)])
    else:
        header = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big")
    return header + mask + masked
