"""The orphan rule: what a running job nobody watches becomes, and what may be signalled.

A job is orphaned when its server instance is gone, its heartbeat is stale, or its
process is gone. Whatever alive is provably the job's is killed; the job is then failed
with an `orphaned:` reason. Nothing unproven is ever signalled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from server.executors.base import job_marker
from server.jobs.state import (
    INTERRUPTED_PREFIX,
    ORPHANED_PREFIX,
    JobStatus,
    failure,
    record_ending,
    resumable,
)
from server.procs.cgroup import Cgroups, JobCgroup, kill_cgroup
from server.procs.identity import identity_matches, leader_state, marker_carriers
from server.procs.kill import KillReport, Target, check_group, kill_tree

if TYPE_CHECKING:
    from server.store import Store

log = logging.getLogger(__name__)


@dataclass
class OrphanReport:
    job_id: int
    pid: int | None
    reason: str  # the error_message written (or that would be, with dry_run)
    verified: bool  # something alive was proven to be the job's
    killed: bool
    resumed: bool = False  # queued again to be resumed, not ended


@dataclass
class _Findings:
    """What the orphan rule found of a running row."""

    causes: list[str] = field(default_factory=list)
    owner_gone: bool = False  # the server instance that ran it is gone
    verified: bool = False  # something alive is provably the job's
    unprovable: bool = False  # its leader's pid is alive but not provably the job's
    cgroup: JobCgroup | None = None
    in_cgroup: bool = False


@dataclass(frozen=True)
class _Survey:
    """What one pass read before looking at each running row."""

    stale: Mapping[int, dict[str, Any]]  # rows whose heartbeat is older than the timeout
    instances: Mapping[str, dict[str, Any]]  # server instances by id
    live: set[str]  # instances known to be alive (this one included)
    timeout_seconds: float

    async def owner_alive(self, owner: str | None) -> bool:
        """The server instance that owns a row is alive: known so, or its process is."""
        if owner is None:
            return False
        if owner in self.live:
            return True
        row = self.instances.get(owner)
        return row is not None and await asyncio.to_thread(
            identity_matches, row["pid"], row["start_ticks"], row["boot_id"], None
        )


def row_target(job: Mapping[str, Any], install_id: str) -> Target | None:
    """The kill target a job's row names, or None if it recorded no process."""
    if job["process_id"] is None:
        return None
    pid = int(job["process_id"])
    return Target(
        int(job["process_group_id"] or pid),
        pid,
        job["process_start_ticks"],
        job["process_boot_id"],
        job_marker(install_id, int(job["id"])),
    )


async def kill_job_row(
    job: Mapping[str, Any], install_id: str, *, grace: float, escapees: bool = True
) -> KillReport:
    target = row_target(job, install_id)
    if target is None:
        return KillReport(int(job["id"]), False, False, 0, "not signalled: no process recorded")
    return await kill_tree(target, grace=grace, escapees=escapees, job_id=int(job["id"]))


class RemoteOrphans(Protocol):
    """The orphan rule for jobs an executor runs elsewhere (server/jobs/ray_orphans.py)."""

    executor_name: str

    async def settle(
        self, job: dict[str, Any], *, owner_alive: bool, dry_run: bool
    ) -> OrphanReport | None: ...

    async def sweep(self, *, dry_run: bool = False) -> list[OrphanReport]: ...


class OrphanReaper:
    def __init__(
        self,
        store: Store,
        *,
        kill_grace: float,
        instance_id: str | None = None,
        cgroups: Cgroups | None = None,
        remote: RemoteOrphans | None = None,
    ) -> None:
        self.store = store
        self.cgroups = cgroups
        self.kill_grace = kill_grace
        self.instance_id = instance_id
        self.remote = remote
        # Passes finished (start-up's and the monitor's), for /api/health: a test waits for
        # passes after a moment to show that nothing was signalled, instead of sleeping.
        self.passes = 0

    async def reap(
        self,
        timeout_seconds: float,
        *,
        live_instance_ids: Collection[str] = (),
        dry_run: bool = False,
        exclude_job_ids: Collection[int] = (),
        resume: bool = False,
    ) -> list[OrphanReport]:
        """Settle running jobs nobody is watching any more: kill what is provably theirs,
        mark them failed with an `orphaned:` reason. dry_run only reports. With `resume`
        (a server starting), a local job whose server is gone and of which nothing runs
        any more (or only what could be killed) is queued again, to be resumed.

        A live runner must pass the jobs it is waiting on as `exclude_job_ids`: it records
        their real endings itself, and a process that just exited would otherwise be
        settled here as "gone" in a race with its complete_job.
        """
        live = set(live_instance_ids)
        if self.instance_id is not None:
            live.add(self.instance_id)
        survey = _Survey(
            stale={j["id"]: j for j in await self.store.get_orphaned_jobs(timeout_seconds)},
            instances={i["id"]: i for i in await self.store.list_instances()},
            live=live,
            timeout_seconds=timeout_seconds,
        )
        reports: list[OrphanReport] = []
        active = await self.store.get_active_jobs()
        for job in active:
            if job["id"] in exclude_job_ids:
                continue
            if job.get("executor") not in (None, "local"):
                # Runs elsewhere: no local process to look for; its executor's rule applies.
                report = await self._settle_remote(job, survey, dry_run)
            else:
                report = await self._settle(job, survey, dry_run, resume)
            if report is not None:
                reports.append(report)
        if not dry_run:
            await self._sweep_cgroups(exclude_job_ids)
        if self.remote is not None:
            reports += await self.remote.sweep(dry_run=dry_run)
        self.passes += 1
        return reports

    async def _sweep_cgroups(self, exclude_job_ids: Collection[int]) -> None:
        """Kill and remove job cgroups whose job is over (a crash between a job's end and
        its cgroup's removal); membership alone proves what is in them ours.

        A job's row exists before its cgroup, so the row is read after the cgroup was
        listed: a job that started meanwhile (here or in another instance) shows as
        queued or running and is left alone. Reading the rows first killed a job that
        started between the read and the listing."""
        if self.cgroups is None:
            return
        for job_id in await asyncio.to_thread(self.cgroups.job_ids):
            row = await self.store.get_job(job_id)
            if row is not None and not JobStatus(row["status"]).is_final:
                continue
            if job_id in exclude_job_ids:  # a live view: checked just before the kill
                continue
            cgroup = self.cgroups.job(job_id)
            report = await kill_cgroup(cgroup, grace=self.kill_grace, job_id=job_id)
            if report.signalled:
                log.warning("job %s: leftover cgroup: %s", job_id, report.reason)
            cgroup.remove()

    async def _settle_remote(
        self, job: dict[str, Any], survey: _Survey, dry_run: bool
    ) -> OrphanReport | None:
        if self.remote is None or job.get("executor") != self.remote.executor_name:
            return None  # nothing here can check it; left as it is
        owner_alive = await survey.owner_alive(job["instance_id"])
        return await self.remote.settle(job, owner_alive=owner_alive, dry_run=dry_run)

    async def _settle(
        self, job: dict[str, Any], survey: _Survey, dry_run: bool, resume: bool
    ) -> OrphanReport | None:
        job_id, pid = int(job["id"]), job["process_id"]
        found = await self._inspect(job, survey)
        if not found.causes:
            return None
        message = f"{ORPHANED_PREFIX} " + "; ".join(found.causes)
        killed, survivors = False, 0
        if found.verified and not dry_run:
            note, killed, survivors = await self._kill(job, found)
            message += note
        if found.cgroup is not None and not dry_run:
            found.cgroup.remove()
        # The server going away interrupted it and nothing of it runs now: queued again,
        # to be resumed. Something alive that may not be signalled keeps the orphan rule.
        if resume and resumable(job) and found.owner_gone and not found.unprovable and not survivors:
            message = message.replace(ORPHANED_PREFIX, INTERRUPTED_PREFIX, 1) + "; queued again to resume"
            if not dry_run and not await self.store.requeue_interrupted(job_id):
                return None  # it ended meanwhile
            return OrphanReport(job_id, pid, message, found.verified, killed, resumed=True)
        if not dry_run:
            await record_ending(self.store, job_id, failure(message))
        return OrphanReport(job_id, pid, message, found.verified, killed)

    async def _inspect(self, job: dict[str, Any], survey: _Survey) -> _Findings:
        job_id = int(job["id"])
        pid = job["process_id"]
        marker = job_marker(self.store.install_id, job_id)
        found = _Findings()
        owner = job["instance_id"]
        if owner is not None and not await survey.owner_alive(owner):
            found.owner_gone = True
            found.causes.append(f"server instance {owner[:8]}… is gone")
        if job_id in survey.stale:
            if job["last_heartbeat"] is None:
                found.causes.append("no heartbeat recorded")
            else:
                found.causes.append(f"heartbeat older than {survey.timeout_seconds:g} s")

        leader_alive, leader_ours = await asyncio.to_thread(
            leader_state, pid, job["process_start_ticks"], job["process_boot_id"], marker
        )
        check = await asyncio.to_thread(
            check_group,
            job["process_group_id"] or pid,
            pid,
            job["process_start_ticks"],
            job["process_boot_id"],
            marker,
        )
        # Something alive is provably the job's: its leader, its group, or a process that
        # left the group but carries the marker.
        # Membership of the job's cgroup is proof on its own: the list is the kernel's.
        found.cgroup = self.cgroups.job(job_id) if self.cgroups is not None else None
        found.in_cgroup = found.cgroup is not None and bool(await asyncio.to_thread(found.cgroup.pids))
        found.verified = found.in_cgroup or leader_ours or (check.ours and check.members > 0)
        if not found.verified:
            found.verified = bool(await asyncio.to_thread(marker_carriers, marker))
        if pid is None:
            found.causes.append("no process recorded")
        elif not leader_alive:
            found.causes.append(f"process {pid} is gone")
        elif not leader_ours:
            cause = f"pid {pid} now belongs to another process"
            if not found.verified:
                cause += "; not signalled"
                found.unprovable = True
            found.causes.append(cause)
        return found

    async def _kill(self, job: dict[str, Any], found: _Findings) -> tuple[str, bool, int]:
        """Kill what is provably the job's: (what the message adds, killed, survivors)."""
        note, killed, survivors = "", False, 0
        if found.cgroup is not None and found.in_cgroup:
            report = await kill_cgroup(found.cgroup, grace=self.kill_grace, job_id=int(job["id"]))
            killed, survivors = report.signalled, report.survivors
            note += f"; {report.reason}"
        # The identity and marker checks still run: for what left the cgroup.
        report = await kill_job_row(job, self.store.install_id, grace=self.kill_grace)
        killed = killed or report.signalled
        survivors += report.survivors
        if report.signalled or not found.in_cgroup:
            note += f"; {report.reason}"
        return note, killed, survivors
