"""Log latency and event-loop lag: a fake job prints timestamped lines at 1k and 10k lines/s
to 1, 10 and 50 websocket subscribers; each line's latency is client receive time minus the
time.time() the child printed in it (one clock: both run on this machine).

Event-loop lag is read from the server's own probe (`loop_lag_ms` in /api/health, turned on
with --loop-lag-interval: how late a 5 ms timer fires) over a window that lies wholly inside
the 10k/s × 50 stream. An outside client's /api/health round trips would also time the
client itself, which is busy parsing half a million messages a second here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
from aiohttp import WSMsgType

from benchmarks.client import BenchServer, fake
from benchmarks.common import Deadline, Row, median, p99, receive_by, run_async, run_script
from server.web.lagprobe import WINDOW_SECONDS as LAG_WINDOW

START_DELAY = 2.0  # the child waits this long, so every client subscribes before line 1
LAG_INTERVAL = 0.005  # the server probe's sampling interval when it has one
# A log message as channels.encode writes it: its sequence number, then the line.
_SEQ = re.compile(r'"type":"log","job":\d+,"seq":(\d+),"line":"')
_LOG_AT = '"type":"log","job":'
STAMP_CHARS = 17  # time.time() printed as %.6f
FINAL = ("completed", "failed", "cancelled")


@dataclass
class Listener:
    """One websocket subscriber's tally.

    Every log line is counted and its sequence checked (per frame: the first number follows
    the previous frame's last, and last − first + 1 equals the count). One line in `every`
    is timed, so a 50-client run does not spend the client's CPU on parsing half a million
    timestamps a second; the sample is systematic over the whole stream.
    """

    every: int = 1
    latencies: array[float] = field(default_factory=lambda: array("d"))  # seconds
    received: int = 0
    last_seq: int = 0
    broken: int = 0  # frames whose numbers did not continue the sequence
    missed: int = 0  # lines the server said this client missed (gap messages)
    subscribed_at: float = 0.0
    finished: bool = False

    def take(self, frame: str, now: float) -> None:
        count = frame.count(_LOG_AT)
        if count:
            first = _SEQ.search(frame)
            last = _SEQ.match(frame, frame.rfind(_LOG_AT))
            if first is None or last is None:
                raise RuntimeError(f"log messages not in the expected shape: {frame[:200]}")
            low, high = int(first.group(1)), int(last.group(1))
            if low != self.last_seq + 1 or high - low + 1 != count:
                self.broken += 1
            self.last_seq = high
            parts = frame.split('"line":"')
            sample = parts[1 + (-self.received) % self.every :: self.every]
            # Lines without a timestamp (the fake's closing "done") are not timed.
            self.latencies.extend([now - float(p[:STAMP_CHARS]) for p in sample if p[:10].isdigit()])
            self.received += count
        if '"type":"gap"' in frame:
            for match in re.finditer(r'"type":"gap"[^}]*"missed":(\d+)', frame):
                self.missed += int(match.group(1))
        if '"type":"status"' in frame and any(f'"status":"{s}"' in frame for s in FINAL):
            self.finished = True


async def listen(server: BenchServer, job_id: int, listener: Listener, ready: asyncio.Event,
                 total: int, timeout: float) -> None:  # fmt: skip
    async with server.ws() as ws:
        await ws.send_json({"type": "subscribe", "job": job_id})
        deadline = Deadline(timeout)
        while deadline and not listener.finished and listener.received < total:
            try:
                message = await receive_by(ws, deadline)
            except TimeoutError:
                break
            now = time.time()
            if message.type != WSMsgType.TEXT:
                break
            if not ready.is_set() or not listener.subscribed_at:
                listener.subscribed_at = now
                ready.set()
            listener.take(message.data, now)


@dataclass
class CaseResult:
    rate: int
    clients: int
    lines: int
    listeners: list[Listener]
    lag: dict[str, Any] | None = None  # the server probe's summary
    server_cores: float = 0.0  # server CPU seconds per second of the case
    client_cores: float = 0.0  # this benchmark's CPU seconds per second of the case
    load: float = 0.0  # the machine's 1-minute load average at the end

    @property
    def latencies(self) -> list[float]:
        """Every timed line's latency, in ms."""
        return [1000.0 * s for listener in self.listeners for s in listener.latencies]

    @property
    def delivered(self) -> int:
        """Lines 1..lines each client provably got (an unbroken sequence through the last)."""
        return sum(
            self.lines if li.broken == 0 and li.last_seq >= self.lines else min(li.received, self.lines)
            for li in self.listeners
        )

    @property
    def every(self) -> int:
        return self.listeners[0].every


async def run_case(server: BenchServer, rate: int, clients: int, lines: int, measure_lag: bool) -> CaseResult:
    proc, me = server.server_process(), psutil.Process()
    cpu_server, cpu_client, began = sum(proc.cpu_times()[:2]), sum(me.cpu_times()[:2]), time.monotonic()
    job_id = await server.upload(on_disconnect="keep")
    # Above 10k messages/s the client times one line in 10 (it still checks every line).
    listeners = [Listener(every=1 if rate * clients <= 10_000 else 10) for _ in range(clients)]
    readies = [asyncio.Event() for _ in range(clients)]
    stream_seconds = lines / rate
    tasks = [
        asyncio.create_task(listen(server, job_id, li, ev, lines, START_DELAY + stream_seconds + 60))
        for li, ev in zip(listeners, readies, strict=True)
    ]
    lag: dict[str, Any] | None = None
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies)), START_DELAY + 10)
        if measure_lag:
            # Read the probe's window once it lies wholly inside the stream.
            await asyncio.sleep(START_DELAY + min(stream_seconds - 0.5, LAG_WINDOW + 0.5))
            lag = (await server.get("/api/health")).get("loop_lag_ms")
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await server.wait_status(job_id, FINAL, 30)
    took = time.monotonic() - began - START_DELAY
    return CaseResult(
        rate, clients, lines, listeners, lag,
        server_cores=(sum(proc.cpu_times()[:2]) - cpu_server) / took,
        client_cores=(sum(me.cpu_times()[:2]) - cpu_client) / took,
        load=os.getloadavg()[0],
    )  # fmt: skip


def case_rows(result: CaseResult) -> list[Row]:
    lat = result.latencies
    name = f"{result.rate // 1000}k lines/s × {result.clients} client{'s' if result.clients > 1 else ''}"
    expected = result.lines * result.clients
    delivered = result.delivered
    broken = sum(li.broken for li in result.listeners)
    missed = sum(li.missed for li in result.listeners)
    note = (
        f"{delivered}/{expected} lines delivered; server used {result.server_cores:.2f} cores, the "
        f"clients {result.client_cores:.2f}; load average {result.load:.1f}"
    )
    if missed or broken:
        note += f"; {missed} reported missed (gap); {broken} frames broke the sequence"
    if result.every > 1:
        note += f"; latency of every {result.every}th line"
    goal, held = "", None
    if (result.rate, result.clients) == (1000, 10):
        goal = "p99 < 20 ms"
        held = bool(lat) and p99(lat) < 20
    elif (result.rate, result.clients) == (10000, 50):
        goal = "every line delivered; p99 ≤ 100 ms"
        held = delivered == expected and bool(lat) and p99(lat) <= 100
    rows = [
        Row("log latency", name, "child print → client receive (ms)", len(lat),
            median(lat) if lat else None, p99(lat) if lat else None, goal, held, note)
    ]  # fmt: skip
    if result.lag is not None:
        lag = result.lag
        rows.append(
            Row("event-loop lag", name, "server loop lag, in-app probe (ms)", int(lag.get("samples", 0)),
                lag.get("p50"), lag.get("p99"), "p99 < 10 ms", lag.get("p99", 1e9) < 10,
                f"timer lateness sampled every {LAG_INTERVAL * 1000:g} ms over the last "
                f"{LAG_WINDOW:g} s of the stream; max {lag.get('max', float('nan')):.1f} ms")
        )  # fmt: skip
    elif (result.rate, result.clients) == (10000, 50):
        rows.append(
            Row(
                "event-loop lag",
                name,
                "server loop lag (ms)",
                0,
                None,
                None,
                "p99 < 10 ms",
                None,
                "not measured: /api/health has no loop_lag_ms",
            )
        )
    return rows


async def run_all(quick: bool) -> list[Row]:
    seconds = {1000: 3.0 if quick else 5.0, 10000: 6.0 if quick else 8.0}
    rows: list[Row] = []
    for rate in (1000, 10000):
        lines = int(rate * seconds[rate])
        flags = fake(
            "--rate", str(rate), "--lines", str(lines), "--timestamps", "--segments", "0",
            "--start-delay", str(START_DELAY),
        )  # fmt: skip
        probe = ("--loop-lag-interval", str(LAG_INTERVAL))
        intervals = ("--metrics-interval", "1", "--heartbeat-interval", "5")  # the defaults
        async with BenchServer(*flags, *intervals, *probe) as server:
            for clients in (1, 10, 50):
                measure_lag = rate == 10000 and clients == 50
                result = await run_case(server, rate, clients, lines, measure_lag)
                rows.extend(case_rows(result))
                print(f"  log latency {rate}/s × {clients}: done", file=sys.stderr)
    return rows


def rows(quick: bool = False) -> list[Row]:
    return list(run_async(lambda: run_all(quick)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "log latency and event-loop lag", argv)


if __name__ == "__main__":
    sys.exit(main())
