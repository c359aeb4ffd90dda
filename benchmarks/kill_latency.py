"""Kill and orphan latency: how long until the last process of a job's group is gone.

Each job is the fake pipeline with two sleeping helper processes in its group (three
processes in all). The clock starts when the benchmark acts and stops when none of the
three is alive (a zombie counts as gone: it runs nothing and holds no memory):

- stop: POST /api/jobs/{id}/stop; the fake honours SIGTERM.
- disconnect: the job's only websocket subscriber closes; the server waits its
  --disconnect-grace (1 s here), then kills the group.
- orphan: SIGKILL the server; the job's stdin lifeline sees EOF and kills its own group.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence

import psutil

from benchmarks.client import BenchServer, fake, gone, group_members
from benchmarks.common import Deadline, Row, median, p99, run_async, run_script

GRACE = 1.0
HELPERS = 2
POLL = 0.002  # seconds between liveness checks; far below the goals' resolution
FLAGS = fake("--lines", "100000", "--interval", "0.1", "--grandchildren", str(HELPERS))
SERVER_ARGS = ("--disconnect-grace", str(GRACE), "--kill-grace", str(GRACE), "--max-concurrent-jobs", "2")


async def members_when_started(server: BenchServer, job_id: int) -> list[psutil.Process]:
    """The job's leader and its helpers, once all of them run."""
    leader, _pgid = await server.wait_group(job_id)
    deadline = Deadline(15)
    while deadline:
        members = group_members(leader)
        if len(members) >= 1 + HELPERS:
            return members
        await asyncio.sleep(0.01)
    raise RuntimeError(f"job {job_id}: helpers did not start")


async def time_until_gone(members: list[psutil.Process], began: float, limit: float) -> float:
    deadline = Deadline(limit)
    while deadline:
        if gone(members):
            return time.perf_counter() - began
        await asyncio.sleep(POLL)
    raise TimeoutError(f"processes {[p.pid for p in members]} still alive after {limit:g} s")


async def stop_runs(server: BenchServer, runs: int) -> list[float]:
    took = []
    for _ in range(runs):
        job_id = await server.upload(on_disconnect="keep")
        members = await members_when_started(server, job_id)
        began = time.perf_counter()
        stopping = asyncio.create_task(server.stop_job(job_id))
        took.append(await time_until_gone(members, began, 30))
        await stopping
        await server.wait_status(job_id, ("cancelled",), 10)
    return took


async def disconnect_runs(server: BenchServer, runs: int) -> list[float]:
    took = []
    for _ in range(runs):
        job_id = await server.upload()  # on_disconnect=cancel, the default
        async with server.ws() as ws:
            await ws.send_json({"type": "subscribe", "job": job_id})
            await ws.receive(timeout=10)
            members = await members_when_started(server, job_id)
            began = time.perf_counter()
        took.append(await time_until_gone(members, began, 30))
        await server.wait_status(job_id, ("cancelled",), 10)
    return took


async def orphan_runs(runs: int) -> list[float]:
    took = []
    for _ in range(runs):
        async with BenchServer(*FLAGS, *SERVER_ARGS) as server:
            job_id = await server.upload(on_disconnect="keep")
            members = await members_when_started(server, job_id)
            began = time.perf_counter()
            await asyncio.to_thread(server.proc.sigkill)
            took.append(await time_until_gone(members, began, 30))
    return took


async def run_all(quick: bool) -> list[Row]:
    runs = 5 if quick else 20
    async with BenchServer(*FLAGS, *SERVER_ARGS) as server:
        stops = await stop_runs(server, runs)
        print(f"  kill latency: {runs} stops done", file=sys.stderr)
        disconnects = await disconnect_runs(server, runs)
        print(f"  kill latency: {runs} disconnects done", file=sys.stderr)
    orphans = await orphan_runs(runs)
    print(f"  kill latency: {runs} orphans done", file=sys.stderr)
    group = f"{1 + HELPERS} processes per group"
    return [
        Row("kill latency", "stop", "POST stop → last process gone (s)", len(stops), median(stops),
            p99(stops), "p99 < 1 s (SIGTERM honoured)", p99(stops) < 1.0, group),
        Row("kill latency", f"disconnect, grace {GRACE:g} s", "last client closes → last process gone (s)",
            len(disconnects), median(disconnects), p99(disconnects), f"p99 < grace + 1 s = {GRACE + 1:g} s",
            p99(disconnects) < GRACE + 1.0, group),
        Row("orphan latency", "SIGKILL the server", "server SIGKILL → last job process gone (s)",
            len(orphans), median(orphans), p99(orphans), "p99 < 2 s", p99(orphans) < 2.0, group),
    ]  # fmt: skip


def rows(quick: bool = False) -> list[Row]:
    return list(run_async(lambda: run_all(quick)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "kill, disconnect and orphan latency", argv)


if __name__ == "__main__":
    sys.exit(main())
