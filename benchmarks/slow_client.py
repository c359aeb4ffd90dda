"""Slow client: one subscriber stops reading; the others' throughput and the server's memory.

The job floods its log as fast as it can (the fake's --flood-bytes, ~100-byte lines), so
throughput is the server's capacity, not a paced rate. Runs alternate between READERS
readers alone and READERS readers plus one stalled subscriber: a raw socket that does the
websocket handshake, subscribes and never reads again (so nothing in a client library
reads on its behalf). Throughput is each reader's lines per second from its first log
line to its last; the server's RSS is sampled through each run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
import sys
import time
from collections.abc import Sequence

import psutil
from aiohttp import WSMsgType

from benchmarks.client import BenchServer, fake
from benchmarks.common import Deadline, Row, median, p99, run_async, run_script

READERS = 5
LINE_BYTES = 97  # the fake's flood lines, newline included
FINAL = ("completed", "failed", "cancelled")


async def reader(server: BenchServer, job_id: int, lines: int) -> float:
    """Lines per second this subscriber received, first log line to the last."""
    first = last = 0.0
    received = 0
    async with server.ws() as ws:
        await ws.send_json({"type": "subscribe", "job": job_id})
        deadline = Deadline(120)
        while deadline and received < lines:
            message = await ws.receive(timeout=deadline.left)
            if message.type != WSMsgType.TEXT:
                break
            count = message.data.count('"type":"log"')
            if count:
                last = time.perf_counter()
                first = first or last
                received += count
            if '"type":"status"' in message.data and any(f'"{s}"' in message.data for s in FINAL):
                break
    if received < lines * 0.99 or last <= first:
        raise RuntimeError(f"a reader got {received} of {lines} lines")
    return received / (last - first)


async def stalled(server: BenchServer, job_id: int) -> asyncio.StreamWriter:
    """A websocket that subscribes and then never reads; the caller closes it."""
    reader_, writer = await asyncio.open_connection("127.0.0.1", server.proc.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.proc.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader_.readuntil(b"\r\n\r\n"), 10)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"websocket handshake refused: {head[:100]!r}")
    payload = json.dumps({"type": "subscribe", "job": job_id}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)
    await writer.drain()
    return writer


async def rss_sampler(proc: psutil.Process, stop: asyncio.Event) -> list[float]:
    out = []
    while not stop.is_set():
        out.append(proc.memory_info().rss / 2**20)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    return out


async def one_run(server: BenchServer, lines: int, with_stalled: bool) -> tuple[list[float], float]:
    """Each reader's throughput, and the server's peak RSS growth during the run (MB)."""
    proc = server.server_process()
    before = proc.memory_info().rss / 2**20
    job_id = await server.upload(on_disconnect="keep")
    stuck = await stalled(server, job_id) if with_stalled else None
    stop = asyncio.Event()
    sampler = asyncio.create_task(rss_sampler(proc, stop))
    try:
        rates = await asyncio.gather(*(reader(server, job_id, lines) for _ in range(READERS)))
        await server.wait_status(job_id, FINAL, 60)
    finally:
        stop.set()
        peak = max(await sampler, default=before)
        if stuck is not None:
            stuck.close()
    return list(rates), peak - before


async def run_all(quick: bool) -> list[Row]:
    pairs = 2 if quick else 4
    lines = 60_000 if quick else 120_000
    flags = fake("--flood-bytes", str(lines * LINE_BYTES), "--lines", "0", "--segments", "0",
                 "--start-delay", "1.5")  # fmt: skip
    alone: list[float] = []
    beside: list[float] = []
    growth_alone: list[float] = []
    growth_beside: list[float] = []
    async with BenchServer(*flags, "--max-concurrent-jobs", "1") as server:
        # The fake floods in blocks of 1000 lines: the total is rounded up to whole blocks.
        total = -(-lines // 1000) * 1000
        for pair in range(pairs):
            order = (False, True) if pair % 2 == 0 else (True, False)
            for with_stalled in order:
                rates, growth = await one_run(server, total, with_stalled)
                (beside if with_stalled else alone).extend(rates)
                (growth_beside if with_stalled else growth_alone).append(growth)
            print(f"  slow client: pair {pair + 1}/{pairs} done", file=sys.stderr)
    drops = [100.0 * (1 - b / median(alone)) for b in beside]
    drop = 100.0 * (1 - median(beside) / median(alone))
    extra_mb = max(growth_beside) - median(growth_alone)
    return [
        Row("slow client", f"{READERS} readers + 1 stalled", "others' throughput drop (%)",
            len(beside), drop, p99(drops), "drop < 10%", drop < 10,
            f"median {median(alone):.0f} lines/s alone, {median(beside):.0f} beside a stalled client; "
            f"{total} lines per run, {pairs} runs each, alternating"),
        Row("slow client", "server memory", "peak RSS growth during a run (MB)", len(growth_beside),
            median(growth_beside), max(growth_beside), "bounded (within 20 MB of no stalled client)",
            extra_mb < 20, f"without a stalled client: median {median(growth_alone):.1f} MB"),
    ]  # fmt: skip


def rows(quick: bool = False) -> list[Row]:
    return list(run_async(lambda: run_all(quick)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "one stalled subscriber against the others' throughput", argv)


if __name__ == "__main__":
    sys.exit(main())
