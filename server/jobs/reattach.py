"""Picking up jobs a cluster kept running while this server was down.

A Ray job outlives a server killed with SIGKILL. On start-up each running row that names
a Ray job is followed again by a `JobRun`, as a fresh job is: Ray's tail replays the whole
log, so the lines the job's log file already holds are skipped by count
(joblog.reopen_job_log), and the log resumes with none repeated or missing. A job that
ended meanwhile replays to its end and takes its status from Ray.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.executors.base import JobHandle, Reattaching, job_marker
from server.jobs.joblog import job_log_path, reopen_job_log
from server.jobs.replay import logged_segments
from server.jobs.run import JobRun
from server.jobs.runner import Runner

if TYPE_CHECKING:
    from server.store import Store

log = logging.getLogger(__name__)


async def reattach_jobs(
    runner: Runner, store: Store, executor: Reattaching[Any], executor_name: str, *, instance_id: str
) -> list[int]:
    """Adopt every running job of `executor_name` that another instance owned."""
    adopted = []
    for job in await store.get_active_jobs():
        if job.get("executor") != executor_name or not job.get("ray_submission_id"):
            continue
        if job["instance_id"] == instance_id or runner.is_active(job["id"]):
            continue
        runner.adopt(job["id"], partial(_follow_again, executor, job))
        log.warning("job %s: re-attached to %s job %s", job["id"], executor_name, job["ray_submission_id"])
        adopted.append(int(job["id"]))
    return adopted


async def _follow_again(executor: Reattaching[Any], job: dict[str, Any], run: JobRun) -> None:
    job_id = run.job_id
    log_path = Path(job["log_file_path"] or job_log_path(run.config, job_id))
    joblog, lines = await asyncio.to_thread(reopen_job_log, run.config, log_path)
    try:
        run.segments.extend(logged_segments(lines))
        await run.store.update_job(job_id, instance_id=run.instance_id, log_file_path=str(log_path))
        marker = job_marker(run.store.install_id, job_id)
        handle: JobHandle = executor.reattach(job, marker, joblog.lines)
        # Numbered on from the file, as a finished job's replay numbers its lines.
        run.channel.seq = max(run.channel.seq, joblog.lines)
        await run.follow(handle, joblog)
    finally:
        joblog.close()
