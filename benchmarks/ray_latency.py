"""Ray executor latency (issue #17), on a Ray head started on loopback for the run.

- submit → first log line: POST /api/jobs until the job's first log line reaches a
  websocket subscriber, and until the pipeline's own first line does (Ray prints its
  runtime-env and entrypoint lines before it).
- stop → processes gone: POST stop until no process of the job (the wrapper, the fake
  pipeline and its helper; found by the job marker Ray passes in their environment) is
  alive, and until the stop answers (the server records `cancelled` only once Ray says
  STOPPED and its log tail has closed).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence

import psutil

from benchmarks.client import BenchServer, fake
from benchmarks.common import Deadline, Row, median, p99, receive_by, run_async, run_script
from server.procs.identity import marker_carriers

FLAGS = fake("--lines", "100000", "--interval", "0.05", "--grandchildren", "1")
POLL = 0.01


def job_pids(marker: str) -> list[int]:
    pids = []
    for ident in marker_carriers(marker):
        try:
            if not psutil.Process(ident.pid).name().startswith("ray::"):
                pids.append(ident.pid)  # Ray's supervisor actor is not the job
        except psutil.Error:
            continue
    return pids


async def until(done: Callable[[], bool], limit: float) -> None:
    deadline = Deadline(limit)
    while deadline:
        if done():
            return
        await asyncio.sleep(POLL)
    raise TimeoutError(f"not done within {limit:g} s")


async def one_run(server: BenchServer, install_id: str) -> tuple[float, float, float, float]:
    assert server.session is not None
    async with server.ws() as ws:
        began = time.perf_counter()
        job_id = await server.upload(on_disconnect="keep")
        await ws.send_json({"type": "subscribe", "job": job_id})
        first_any = first_pipeline = None
        deadline = Deadline(120)
        while deadline and first_pipeline is None:
            frame = json.loads((await receive_by(ws, deadline)).data)
            for message in frame if isinstance(frame, list) else [frame]:
                if message.get("type") != "log":
                    continue
                now = time.perf_counter() - began
                first_any = first_any if first_any is not None else now
                if message["line"].startswith("line 1 of"):
                    first_pipeline = now
        if first_any is None or first_pipeline is None:
            raise TimeoutError(f"job {job_id}: no pipeline line within 120 s")
    marker = f"{install_id}:{job_id}"
    await until(lambda: len(job_pids(marker)) >= 3, 30)  # wrapper, pipeline, helper
    stop_began = time.perf_counter()
    stopping = asyncio.ensure_future(server.stop_job(job_id))
    await until(lambda: not job_pids(marker), 60)
    gone = time.perf_counter() - stop_began
    await stopping
    answered = time.perf_counter() - stop_began
    return first_any, first_pipeline, gone, answered


async def run_all(quick: bool) -> list[Row]:
    from tests.helpers.ray_head import ray_head

    runs = 2 if quick else 5
    with ray_head() as head:
        args = ("--executor", "ray", "--ray-address", head.address, "--max-concurrent-jobs", "2")
        async with BenchServer(*FLAGS, *args) as server:
            with sqlite3.connect(server.proc.data_dir / "transcriptor.db") as db:
                install_id = db.execute("SELECT install_id FROM meta").fetchone()[0]
            results = []
            for n in range(runs):
                results.append(await one_run(server, install_id))
                print(f"  ray latency: run {n + 1} of {runs}: {results[-1]}", file=sys.stderr)
    first_any, first_line, gone, answered = (list(column) for column in zip(*results, strict=True))
    note = "local Ray 2 CPUs on loopback; fake pipeline; RAY_JOB_STOP_WAIT_TIME_S default (3 s)"
    return [
        Row("ray latency", "submit → first log line", "POST /api/jobs → first log line at a client (s)",
            runs, median(first_any), p99(first_any), "", None, note + "; Ray's own runtime-env line"),
        Row("ray latency", "submit → first pipeline line", "POST /api/jobs → `line 1 of` at a client (s)",
            runs, median(first_line), p99(first_line), "", None, note),
        Row("ray latency", "stop → processes gone", "POST stop → last job process gone (s)",
            runs, median(gone), p99(gone), "", None, note + "; 3 processes per job"),
        Row("ray latency", "stop → recorded", "POST stop → answer, job cancelled (s)",
            runs, median(answered), p99(answered), "", None, "waits for Ray's STOPPED and the tail to close"),
    ]  # fmt: skip


def rows(quick: bool = False) -> list[Row]:
    return list(run_async(lambda: run_all(quick)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "Ray executor: submit and stop latency", argv)


if __name__ == "__main__":
    sys.exit(main())
