"""Monitor cost: the server's CPU time with 10 sleeping fake jobs against 0, per job.

The server runs with its default intervals (metrics sampled at 1 Hz, heartbeats every
5 s). CPU time is the server process's user + system time (psutil, which includes the
thread the sampler runs in); each window is `WINDOW` seconds, idle and busy windows are
measured in the same run, and the cost per job is (busy − idle median) / 10 jobs.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence

import psutil

from benchmarks.client import BenchServer, fake
from benchmarks.common import Row, median, p99, run_async, run_script

JOBS = 10
HELPERS = 2  # each fake job is a group of three processes, like a leader with two workers


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def windows(proc: psutil.Process, count: int, seconds: float) -> list[float]:
    """Fraction of one core the server used in each of `count` windows."""
    out = []
    for _ in range(count):
        began_cpu, began = cpu_seconds(proc), time.monotonic()
        await asyncio.sleep(seconds)
        out.append((cpu_seconds(proc) - began_cpu) / (time.monotonic() - began))
    return out


async def run_all(quick: bool) -> list[Row]:
    count, seconds = (3, 4.0) if quick else (6, 5.0)
    flags = fake("--lines", "1", "--interval", "600", "--segments", "0", "--grandchildren", str(HELPERS))
    defaults = ("--metrics-interval", "1", "--heartbeat-interval", "5", "--max-concurrent-jobs", str(JOBS))
    async with BenchServer(*flags, *defaults) as server:
        proc = server.server_process()
        await asyncio.sleep(2)  # start-up work (imports, first heartbeat) is not the monitor's
        idle = await windows(proc, count, seconds)
        job_ids = [await server.upload(on_disconnect="keep") for _ in range(JOBS)]
        for job_id in job_ids:
            await server.wait_group(job_id)
        await asyncio.sleep(2)  # first samples of each new tree cost more (psutil caches)
        busy = await windows(proc, count, seconds)
        statuses = [(await server.job(j))["status"] for j in job_ids]
        running = statuses.count("running")
        for job_id in job_ids:
            await server.stop_job(job_id)
    base = median(idle)
    per_job = [100.0 * (b - base) / JOBS for b in busy]
    note = (
        f"{running}/{JOBS} jobs running throughout; {1 + HELPERS} processes each; idle server "
        f"{100 * base:.2f}% of a core; {count} windows of {seconds:g} s each"
    )
    return [
        Row("monitor cost", f"{JOBS} sleeping jobs, 1 Hz", "server CPU per job, % of one core", len(busy),
            median(per_job), p99(per_job), "< 0.5% per job", p99(per_job) < 0.5, note)
    ]  # fmt: skip


def rows(quick: bool = False) -> list[Row]:
    return list(run_async(lambda: run_all(quick)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "monitor cost per running job", argv)


if __name__ == "__main__":
    sys.exit(main())
