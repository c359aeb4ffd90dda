"""Picking up jobs a cluster kept running while this server was down.

A Ray job outlives a server killed with SIGKILL. On start-up each running row that names
a Ray job is followed again: Ray's tail replays the whole log, so the lines the job's log
file already holds are skipped by count, and the log resumes with none repeated or
missing. A job that ended meanwhile replays to its end and takes its status from Ray.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.protocol import Segment, parse_line
from server.executors.base import JobHandle, job_marker
from server.jobs.joblog import JobLog
from server.jobs.output import OutputFollower
from server.jobs.state import Phase

if TYPE_CHECKING:
    from server.jobs.runner import Runner, RunningJob

log = logging.getLogger(__name__)


class Reattaching(Protocol):
    """An executor that can follow a job another server instance started."""

    def reattach(self, job: dict[str, Any], marker: str, skip_lines: int) -> JobHandle: ...


def read_log(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    # A line cut by the crash has no newline; the tail's copy of it comes again whole.
    complete = data[: data.rfind(b"\n") + 1]
    return complete.decode("utf-8", "replace").splitlines()


async def reattach_jobs(runner: Runner, executor: Reattaching, executor_name: str) -> list[int]:
    """Adopt every running job of `executor_name` that another instance owned."""
    adopted = []
    for job in await runner.store.get_active_jobs():
        if job.get("executor") != executor_name or not job.get("ray_submission_id"):
            continue
        if job["instance_id"] == runner.instance_id or job["id"] in runner.running:
            continue
        runner.adopt(job["id"], partial(_follow_again, runner, executor, job))
        log.warning("job %s: re-attached to %s job %s", job["id"], executor_name, job["ray_submission_id"])
        adopted.append(int(job["id"]))
    return adopted


async def _follow_again(
    runner: Runner, executor: Reattaching, job: dict[str, Any], running: RunningJob
) -> None:
    job_id = running.job_id
    log_path = Path(job["log_file_path"] or runner.config.logs_dir / f"job-{job_id}.log")
    lines = await asyncio.to_thread(read_log, log_path)
    # Cut a partial last line, so the file holds exactly the lines counted.
    await asyncio.to_thread(_truncate_to_lines, log_path)
    for seq, line in enumerate(lines, start=1):
        event = parse_line(line)
        if isinstance(event, Segment):
            running.segments.append({"seq": seq, "start": event.start, "end": event.end, "text": event.text})
    await runner.store.update_job(job_id, instance_id=runner.instance_id, log_file_path=str(log_path))
    handle = executor.reattach(job, job_marker(runner.store.install_id, job_id), len(lines))
    running.handle = handle
    channel = runner.channels.get(job_id)
    # Numbered on from the file, as a finished job's replay numbers its lines.
    channel.seq = max(channel.seq, len(lines))
    running.phase.change(Phase.RUNNING)
    joblog = JobLog(log_path, cap_bytes=runner.config.log_cap_bytes)
    try:
        await runner.announce(job_id)
        await OutputFollower(runner, running, handle, joblog).follow()
        code = await runner.executor.wait(handle)
    finally:
        joblog.close()
    await runner._record_end(running, code)


def _truncate_to_lines(path: Path) -> None:
    try:
        with path.open("r+b") as file:
            data = file.read()
            file.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass
