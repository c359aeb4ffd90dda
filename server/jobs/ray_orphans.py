"""The orphan rule for a cluster: what Ray jobs nobody watches become.

- A running row whose Ray job ended takes its ending from Ray (and its transcript from
  the `[result]` line Ray kept in the log).
- A running row whose server is gone, when no server here re-attaches it, is stopped on
  Ray and failed as orphaned; one whose Ray job is unknown is failed as orphaned.
- A Ray job of this install that still runs while its row is over (or names another
  submission, or is gone) is stopped.
Nothing is decided while the cluster cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.protocol import parse_result
from server.executors.ray import write_result_files
from server.executors.ray_cluster import STOPPED, ClusterError, NoSuchRayJob, RayCluster, RayJobInfo
from server.jobs.orphans import OrphanReport
from server.jobs.state import ORPHANED_PREFIX, JobStatus, decide_ending, failure, record_ending

if TYPE_CHECKING:
    from server.store import Store

log = logging.getLogger(__name__)


class RayOrphans:
    """Settles Ray rows for the OrphanReaper. `adopts`: this server re-attaches Ray jobs
    itself, so a gone owner's running job is left for it rather than stopped."""

    executor_name = "ray"

    def __init__(self, cluster: RayCluster, store: Store, *, adopts: bool) -> None:
        self.cluster = cluster
        self.store = store
        self.adopts = adopts

    async def settle(self, job: dict[str, Any], *, owner_alive: bool, dry_run: bool) -> OrphanReport | None:
        if owner_alive or self.adopts:
            return None
        job_id = int(job["id"])
        submission_id = job.get("ray_submission_id")
        if not submission_id:
            return await self._fail(job_id, f"{ORPHANED_PREFIX} no Ray job recorded", dry_run)
        try:
            info = await self.cluster.info(submission_id)
        except NoSuchRayJob:
            return await self._fail(job_id, f"{ORPHANED_PREFIX} Ray job {submission_id} not found", dry_run)
        except ClusterError as error:
            log.warning("job %s: cannot settle it now: %s", job_id, error)
            return None
        if info.terminal:
            return await self._settle_ended(job, info, dry_run)
        message = f"{ORPHANED_PREFIX} its server is gone; Ray job {submission_id} was {info.status}"
        stopped = False
        if not dry_run:
            stopped = await self._stop(submission_id)
            message += "; asked Ray to stop it" if stopped else "; could not stop it"
        report = await self._fail(job_id, message, dry_run)
        report.killed = stopped
        return report

    async def _settle_ended(self, job: dict[str, Any], info: RayJobInfo, dry_run: bool) -> OrphanReport:
        job_id = int(job["id"])
        if info.status == STOPPED:
            ending = failure(f"{ORPHANED_PREFIX} Ray job {info.submission_id} was stopped on the cluster")
        else:
            code = info.driver_exit_code
            if code is None:
                code = 0 if info.status == "SUCCEEDED" else 1
            ending = decide_ending(code, cancel_reason=None, detail=info.message)
        if not dry_run:
            if ending.status is JobStatus.COMPLETED and job.get("output_path"):
                await self._save_result(info.submission_id, Path(job["output_path"]))
            await record_ending(self.store, job_id, ending)
        reason = ending.message or f"{ending.status.value} on Ray while no server watched it"
        return OrphanReport(job_id, None, reason, verified=True, killed=False)

    async def _save_result(self, submission_id: str, out_dir: Path) -> None:
        try:
            text = await self.cluster.logs(submission_id)
        except ClusterError as error:
            log.warning("%s: no transcript: %s", submission_id, error)
            return
        for line in reversed(text.splitlines()):
            files = parse_result(line)
            if files is not None:
                await asyncio.to_thread(write_result_files, out_dir, files)
                return

    async def _stop(self, submission_id: str) -> bool:
        try:
            return await self.cluster.stop(submission_id)
        except ClusterError as error:
            log.warning("%s: %s", submission_id, error)
            return False

    async def _fail(self, job_id: int, message: str, dry_run: bool) -> OrphanReport:
        if not dry_run:
            await record_ending(self.store, job_id, failure(message))
        return OrphanReport(job_id, None, message, verified=False, killed=False)

    async def sweep(self, *, dry_run: bool = False) -> list[OrphanReport]:
        """Stop Ray jobs of this install that run on though no running row names them."""
        try:
            jobs = await self.cluster.jobs_of(self.store.install_id)
        except ClusterError as error:
            log.info("cluster sweep skipped: %s", error)
            return []
        reports = []
        for info in jobs:
            if info.terminal:
                continue
            raw_id = info.metadata.get("transcriptor_job", "")
            row = await self.store.get_job(int(raw_id)) if raw_id.isdigit() else None
            if (
                row is not None
                and row["status"] in (JobStatus.QUEUED, JobStatus.RUNNING)
                and row.get("ray_submission_id") == info.submission_id
            ):
                continue
            state = "no such job" if row is None else f"job is {row['status']}"
            message = f"Ray job {info.submission_id} still {info.status} ({state})"
            stopped = False if dry_run else await self._stop(info.submission_id)
            if stopped:
                message += "; asked Ray to stop it"
            reports.append(OrphanReport(int(raw_id or 0), None, message, verified=True, killed=stopped))
        return reports

