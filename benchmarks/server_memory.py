"""Server memory: RSS after 100 jobs against after 10, in one server.

Each job is a short fake run that a websocket client follows from upload to its final
status and then leaves, the way a page does, so channels, subscribers, replay buffers and
job rows are all exercised. RSS is the median of several readings at each point.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import psutil

from benchmarks.client import BenchServer, fake, messages
from benchmarks.common import Deadline, Row, median, receive_by, run_async, run_script

FINAL = ("completed", "failed", "cancelled")


async def rss_mb(proc: psutil.Process, readings: int = 5) -> float:
    values = []
    for _ in range(readings):
        values.append(proc.memory_info().rss / 2**20)
        await asyncio.sleep(0.2)
    return median(values)


async def follow_one(server: BenchServer) -> str:
    """Upload a job, follow it over /ws until it ends; its final status."""
    job_id = await server.upload()
    async with server.ws() as ws:
        await ws.send_json({"type": "subscribe", "job": job_id})
        deadline = Deadline(60)
        while deadline:
            message = await receive_by(ws, deadline)
            for item in messages(message.data):
                if item.get("type") == "status" and item.get("status") in FINAL:
                    return str(item["status"])
    raise TimeoutError(f"job {job_id} did not end")


async def run_all(quick: bool) -> list[Row]:
    first, total = (10, 40) if quick else (10, 100)
    flags = fake("--lines", "200", "--interval", "0", "--segments", "5")
    async with BenchServer(*flags, "--max-concurrent-jobs", "2") as server:
        proc = server.server_process()
        statuses: list[str] = []
        checkpoints: dict[int, float] = {}
        for done in range(1, total + 1):
            statuses.append(await follow_one(server))
            if done == first or done == total or done % 25 == 0:
                await asyncio.sleep(1.5)  # let the disconnect grace and job teardown settle
                checkpoints[done] = await rss_mb(proc)
    growth = checkpoints[total] - checkpoints[first]
    ok = statuses.count("completed")
    trend = ", ".join(f"{n}: {mb:.1f}" for n, mb in sorted(checkpoints.items()))
    note = f"RSS MB after N jobs: {trend}; {ok}/{total} completed; figure is the growth"
    return [
        Row("server memory", f"{total} jobs vs {first}", f"RSS growth, {first} → {total} jobs (MB)", 1,
            growth, None, "growth < 10 MB", growth < 10, note)
    ]  # fmt: skip


def rows(quick: bool = False) -> list[Row]:
    return list(run_async(lambda: run_all(quick)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "server memory after many jobs", argv)


if __name__ == "__main__":
    sys.exit(main())
