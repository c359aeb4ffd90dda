"""`transcriptor jobs`, `logs` (without -f) and `stop`: one request each to a running server."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from server.cli.client import ServerClient
from server.cli.common import EXIT_OK
from server.jobs.state import ACTIVE_STATES, JobStatus

ACTIVE = tuple(sorted(ACTIVE_STATES))
FILE_WIDTH = 32


def process_facts(job: dict[str, Any]) -> dict[str, Any] | None:
    """What the server last saw of a running job's process tree, or None for other jobs.

    `running` is None when the server has not sampled the job yet (it just started, or it
    belongs to another server instance).
    """
    if job.get("status") != JobStatus.RUNNING:
        return None
    metrics = job.get("metrics") or {}
    running = metrics.get("running") if metrics else None
    if metrics and running is None:
        running = True  # a sample exists, so the server found the process
    return {
        "pid": job.get("process_id"),
        "running": running,
        "cpu_percent": metrics.get("cpu_percent"),
        "memory_mb": metrics.get("memory_mb"),
        "num_processes": metrics.get("num_processes"),
    }


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _status(job: dict[str, Any]) -> str:
    status = str(job.get("status"))
    if status == JobStatus.QUEUED and job.get("queue_position"):
        return f"queued #{job['queue_position']}"
    return status


def _number(value: Any, fmt: str) -> str:
    return format(float(value), fmt) if isinstance(value, int | float) else "-"


def job_rows(jobs: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["ID", "FILE", "STATUS", "PROGRESS", "PID", "PROCESS", "CPU%", "MEMORY"]]
    for job in jobs:
        facts = process_facts(job)
        row = [
            str(job.get("id")),
            _shorten(str(job.get("filename") or ""), FILE_WIDTH),
            _status(job),
            f"{100.0 * float(job.get('progress') or 0.0):.1f}%",
        ]
        if facts is None:
            row += ["-", "-", "-", "-"]
        else:
            alive = {True: "running", False: "gone", None: "starting"}[facts["running"]]
            memory = _number(facts["memory_mb"], ".1f")
            row += [
                str(facts["pid"] or "-"),
                alive,
                _number(facts["cpu_percent"], ".1f"),
                memory + " MiB" if memory != "-" else "-",
            ]
        rows.append(row)
    return rows


def print_table(rows: list[list[str]], out: TextIO) -> None:
    """Columns padded to their widest cell; numbers (all but FILE, STATUS, PROCESS) right."""
    left = {1, 2, 5}
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(widths[i]) if i in left else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        out.write("  ".join(cells).rstrip() + "\n")


async def jobs(args: argparse.Namespace) -> int:
    async with ServerClient.connect(args.server, args.token) as client:
        data = await client.request("GET", "/api/jobs")
    found = list(data.get("jobs") or [])
    if args.active:
        found = [job for job in found if job.get("status") in ACTIVE]
    if args.json:
        for job in found:
            job["process"] = process_facts(job)
        json.dump({"server": client.url, "jobs": found}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    if not found:
        print("no active jobs" if args.active else "no jobs")
        return EXIT_OK
    print_table(job_rows(found), sys.stdout)
    return EXIT_OK


async def logs(args: argparse.Namespace) -> int:
    """The last N lines of a job's log, from its log file on the server."""
    path = f"/api/jobs/{args.job}"
    async with ServerClient.connect(args.server, args.token) as client:
        if args.lines == 0:
            await client.request("GET", path, job_id=args.job)
            return EXIT_OK
        data = await client.request("GET", path + "/logs", job_id=args.job, lines=str(args.lines))
    lines = data.get("lines") or []
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()
    return EXIT_OK


async def stop(args: argparse.Namespace) -> int:
    path = f"/api/jobs/{args.job}"
    async with ServerClient.connect(args.server, args.token) as client:
        job = await client.request("POST", path + "/stop", job_id=args.job)
    print(describe_ending(job))
    return EXIT_OK


def describe_ending(job: dict[str, Any]) -> str:
    """`job 3 cancelled (stopped by user; exit code -15)` and the like."""
    details = [str(detail) for detail in (job.get("cancel_reason"), job.get("error_message")) if detail]
    code = job.get("exit_code")
    if code is not None:
        details.append(f"exit code {code}")
    suffix = f" ({'; '.join(details)})" if details else ""
    return f"job {job.get('id', job.get('job'))} {job.get('status')}{suffix}"
