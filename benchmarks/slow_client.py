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
import re
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil
from aiohttp import WSMsgType

from benchmarks.client import BenchServer, fake
from benchmarks.common import Deadline, Row, median, p99, receive_by, run_async, run_script
from server.jobs.channels import SUBSCRIBER_QUEUE_SIZE

READERS = 5
LINE_BYTES = 97  # the fake's flood lines, newline included
FINAL = ("completed", "failed", "cancelled")
_MISSED = re.compile(r'"type":"gap"[^}]*"missed":(\d+)')
_SEQ = re.compile(r'"type":"log","job":\d+,"seq":(\d+)')


async def reader(server: BenchServer, job_id: int, lines: int) -> tuple[float, int]:
    """Lines per second this subscriber received over the second half of the stream (by then
    a stalled neighbour's kernel buffers are full), and how many lines the server said it
    missed (its own queue overflowed: it read too slowly).

    The half is a place in the stream (a log line's seq), not a count received: the flood
    outruns an aiohttp reader, which misses a share of the lines that varies from run to
    run (47% in the December baseline, 60-70% later with the same server code), so a count
    may never reach half of them.
    """
    half_at = last = 0.0
    received = missed = position = half = 0
    async with server.ws() as ws:
        await ws.send_json({"type": "subscribe", "job": job_id})
        deadline = Deadline(120)
        while deadline and position < lines:
            message = await receive_by(ws, deadline)
            if message.type != WSMsgType.TEXT:
                break
            data = message.data
            count = data.count('"type":"log"')
            if count:
                last = time.perf_counter()
                # The frame's last log line says how far into the stream it reached.
                at = _SEQ.match(data, data.rfind('"type":"log"'))
                position = int(at.group(1)) if at else position + count
                received += count
                if not half_at and position >= lines // 2:
                    half_at, half = last, received
            if '"type":"gap"' in message.data:
                missed += sum(int(m) for m in _MISSED.findall(message.data))
            if '"type":"status"' in message.data and any(f'"{s}"' in message.data for s in FINAL):
                break
    if not half_at or last <= half_at:
        raise RuntimeError(f"a reader got {received} of {lines} lines, up to line {position}")
    return (received - half) / (last - half_at), missed


async def stalled(server: BenchServer, job_id: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket that subscribes and then never reads (until the run is over)."""
    sock = socket.socket()
    # A small receive window, so the kernel's buffers cannot hide the stall from the server.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.proc.port))
    reader_, writer = await asyncio.open_connection(sock=sock)
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
    return reader_, writer


async def rss_sampler(proc: psutil.Process, stop: asyncio.Event) -> list[float]:
    out = []
    while not stop.is_set():
        out.append(proc.memory_info().rss / 2**20)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    return out


async def drain_stalled(reader_: asyncio.StreamReader, seconds: float) -> int:
    """Read what a stalled socket was sent (kernel buffers, then its queue); its log lines."""
    data = b""
    deadline = Deadline(seconds)
    while deadline:
        try:
            chunk = await asyncio.wait_for(reader_.read(1 << 20), deadline.left)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    text = data.decode("utf-8", "replace")
    return text.count('"type":"log"')


@dataclass
class Run:
    rates: list[float]  # each reader's lines/s
    missed: int  # lines the readers themselves missed (their own queues overflowed)
    growth_mb: float  # server peak RSS during the run minus before it
    cpu_us_per_line: float  # server CPU time per line streamed
    stalled: int | None = None  # log lines the stalled socket was sent in all


async def one_run(server: BenchServer, lines: int, with_stalled: bool) -> Run:
    proc = server.server_process()
    before = proc.memory_info().rss / 2**20
    cpu_before = sum(proc.cpu_times()[:2])
    job_id = await server.upload(on_disconnect="keep")
    stuck = await stalled(server, job_id) if with_stalled else None
    stop = asyncio.Event()
    sampler = asyncio.create_task(rss_sampler(proc, stop))
    seen = None
    try:
        results = await asyncio.gather(*(reader(server, job_id, lines) for _ in range(READERS)))
        await server.wait_status(job_id, FINAL, 60)
        cpu = sum(proc.cpu_times()[:2]) - cpu_before
        if stuck is not None:
            seen = await drain_stalled(stuck[0], 3.0)
    finally:
        stop.set()
        peak = max(await sampler, default=before)
        if stuck is not None:
            stuck[1].close()
    return Run([r for r, _ in results], sum(m for _, m in results), peak - before,
               1e6 * cpu / lines, seen)  # fmt: skip


async def run_all(quick: bool) -> list[Row]:
    pairs = 2 if quick else 4
    lines = 100_000 if quick else 160_000
    flags = fake("--flood-bytes", str(lines * LINE_BYTES), "--lines", "0", "--segments", "0",
                 "--start-delay", "1.5")  # fmt: skip
    runs: dict[bool, list[Run]] = {False: [], True: []}
    drops: list[float] = []
    async with BenchServer(*flags, "--max-concurrent-jobs", "1") as server:
        # The fake floods in blocks of 1000 lines: the total is rounded up to whole blocks.
        total = -(-lines // 1000) * 1000
        for pair in range(pairs):
            order = (False, True) if pair % 2 == 0 else (True, False)
            got = {}
            for with_stalled in order:
                got[with_stalled] = await one_run(server, total, with_stalled)
                runs[with_stalled].append(got[with_stalled])
            drops.append(100.0 * (1 - median(got[True].rates) / median(got[False].rates)))
            print(f"  slow client: pair {pair + 1}/{pairs}: drop {drops[-1]:.1f}%", file=sys.stderr)
    alone, beside = runs[False], runs[True]
    rate_alone = median([r for run in alone for r in run.rates])
    rate_beside = median([r for run in beside for r in run.rates])
    stalled_got = sum(run.stalled or 0 for run in beside)
    growth_alone = [run.growth_mb for run in alone]
    growth_beside = [run.growth_mb for run in beside]
    note = (
        f"pairs of runs, alternating order; readers {rate_alone:.0f} lines/s alone, {rate_beside:.0f} "
        f"beside; server CPU {median([r.cpu_us_per_line for r in alone]):.0f} vs "
        f"{median([r.cpu_us_per_line for r in beside]):.0f} µs per line; readers' own overflow "
        f"{sum(r.missed for r in alone)} vs {sum(r.missed for r in beside)} lines; the stalled "
        f"socket was sent {stalled_got} of {total * pairs} lines (the rest dropped at its queue)"
    )
    return [
        Row("slow client", f"{READERS} readers + 1 stalled, flood of {total} lines",
            "others' throughput drop per pair, 2nd half (%)", len(drops), median(drops), p99(drops),
            "drop < 10%", median(drops) < 10, note),
        Row("slow client", "server memory", "peak RSS growth during a run (MB)", len(growth_beside),
            median(growth_beside), p99(growth_beside), "bounded: within 20 MB of no stalled client",
            max(growth_beside) - median(growth_alone) < 20,
            f"without a stalled client: median {median(growth_alone):.1f} MB; the stalled "
            f"subscriber's queue holds at most {SUBSCRIBER_QUEUE_SIZE} messages"),
    ]  # fmt: skip


def rows(quick: bool = False) -> list[Row]:
    return list(run_async(lambda: run_all(quick)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "one stalled subscriber against the others' throughput", argv)


if __name__ == "__main__":
    sys.exit(main())
