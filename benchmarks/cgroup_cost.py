"""Monitor cost per job: cgroup accounting (cpu.stat, the memory charge) against the /proc
tree sampler, same server, same 10 sleeping three-process jobs.

Each mode is a fresh server: the default (a cgroup per job) and one whose --cgroup-root
is a plain folder, which forces process groups and the /proc sampler. The server's CPU
is measured as in monitor_cost.py: (busy − idle median) / jobs, in % of one core.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence

from benchmarks.client import BenchServer, fake
from benchmarks.common import Row, median, p99, run_async, run_script
from benchmarks.monitor_cost import HELPERS, JOBS, windows


async def cost(quick: bool, *extra: str) -> tuple[list[float], str]:
    count, seconds = (3, 4.0) if quick else (6, 5.0)
    flags = fake("--lines", "1", "--interval", "600", "--segments", "0", "--grandchildren", str(HELPERS))
    defaults = ("--metrics-interval", "1", "--heartbeat-interval", "5", "--max-concurrent-jobs", str(JOBS))
    async with BenchServer(*flags, *defaults, *extra) as server:
        health = await server.get("/api/health")
        proc = server.server_process()
        await asyncio.sleep(2)  # start-up work is not the monitor's
        idle = await windows(proc, count, seconds)
        job_ids = [await server.upload(on_disconnect="keep") for _ in range(JOBS)]
        for job_id in job_ids:
            await server.wait_group(job_id)
        await asyncio.sleep(2)
        busy = await windows(proc, count, seconds)
        for job_id in job_ids:
            await server.stop_job(job_id)
    base = median(idle)
    return [100.0 * (b - base) / JOBS for b in busy], str(health.get("containment"))


async def run_all(quick: bool) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as plain:
        for case, extra in (("cgroup accounting", ()), ("/proc sampler", ("--cgroup-root", plain))):
            per_job, containment = await cost(quick, *extra)
            note = f"containment {containment}; {JOBS} jobs of {1 + HELPERS} processes, 1 Hz"
            rows.append(
                Row("monitor cost", case, "server CPU per job, % of one core", len(per_job),
                    median(per_job), p99(per_job), "< 0.5% per job", p99(per_job) < 0.5, note)
            )  # fmt: skip
    return rows


def rows(quick: bool = False) -> list[Row]:
    return list(run_async(lambda: run_all(quick)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "monitor cost: cgroup accounting vs the /proc sampler", argv)


if __name__ == "__main__":
    sys.exit(main())
