"""The process-manager API that users script against, as a thin façade.

`ProcessManager(store)` keeps the names of the first build: `register_process`,
`get_process_status`, `get_logs`, `get_log_path`, `kill_process`, `kill_process_tree` and
`cleanup_orphaned_processes`. Each one delegates to `server.procs` (identity, sampling,
killing) or `server.jobs.orphans` (the orphan rule); see docs/process-manager.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path
from typing import Any

from server.executors.base import job_marker
from server.jobs.logtail import tail_lines
from server.jobs.orphans import OrphanReaper, OrphanReport, RemoteOrphans, kill_job_row
from server.procs.cgroup import Cgroups
from server.procs.identity import identity_matches, read_identity
from server.procs.kill import KillReport
from server.procs.sampler import TreeSampler, gone_sample
from server.store import Store

DEFAULT_KILL_GRACE = 5.0


class ProcessManager:
    """Finds, samples and kills jobs' processes; only ever signals what it can prove is ours."""

    def __init__(
        self,
        store: Store,
        *,
        kill_grace: float = DEFAULT_KILL_GRACE,
        instance_id: str | None = None,
        sampler: TreeSampler | None = None,
        remote: RemoteOrphans | None = None,
        cgroups: Cgroups | None = None,
    ) -> None:
        self.store = store
        self.kill_grace = kill_grace
        self.sampler = sampler or TreeSampler()
        self.reaper = OrphanReaper(
            store, kill_grace=kill_grace, instance_id=instance_id, remote=remote, cgroups=cgroups
        )

    def marker(self, job_id: int) -> str:
        return job_marker(self.store.install_id, job_id)

    async def register_process(self, job_id: int, pid: int, *, pgid: int | None = None) -> bool:
        """Record a running process as the job's, with the identity that proves it later."""
        identity = await asyncio.to_thread(read_identity, pid)
        if identity is None:
            return False
        return await self.store.register_process(
            job_id,
            pid=pid,
            pgid=pgid if pgid is not None else pid,
            start_ticks=identity.start_ticks,
            boot_id=identity.boot_id,
            instance_id=self.reaper.instance_id,
        )

    async def get_process_status(self, job_id: int) -> dict[str, Any]:
        """CPU, memory and process count of the job's tree, if its process is still the job's
        (`Sample.fields()`: memory as `memory_bytes` and, in MiB, `memory_mb`)."""
        job = await self.store.get_job(job_id)
        pid = None if job is None else job["process_id"]
        if job is None or pid is None:
            return gone_sample(pid).fields()
        ours = await asyncio.to_thread(
            identity_matches, pid, job["process_start_ticks"], job["process_boot_id"], self.marker(job_id)
        )
        if not ours:
            return gone_sample(pid).fields()
        return (await asyncio.to_thread(self.sampler.sample_many, [pid]))[pid].fields()

    async def get_log_path(self, job_id: int) -> Path | None:
        job = await self.store.get_job(job_id)
        if job is None or not job["log_file_path"]:
            return None
        return Path(job["log_file_path"])

    async def get_logs(self, job_id: int, lines: int = 50) -> list[str]:
        """The last `lines` lines of the job's log file."""
        path = await self.get_log_path(job_id)
        if path is None:
            return []
        return await asyncio.to_thread(tail_lines, path, lines)

    async def kill_process(self, job_id: int, *, grace: float | None = None) -> KillReport:
        """SIGTERM the job's group, wait up to grace, SIGKILL it; the status is not touched."""
        return await self._kill(job_id, grace, escapees=False)

    async def kill_process_tree(self, job_id: int, *, grace: float | None = None) -> KillReport:
        """kill_process, plus descendants that left the group (setsid), found by marker."""
        return await self._kill(job_id, grace, escapees=True)

    async def _kill(self, job_id: int, grace: float | None, *, escapees: bool) -> KillReport:
        job = await self.store.get_job(job_id)
        if job is None:
            return KillReport(job_id, False, False, 0, "not signalled: no such job")
        grace = self.kill_grace if grace is None else grace
        return await kill_job_row(job, self.store.install_id, grace=grace, escapees=escapees)

    async def cleanup_orphaned_processes(
        self,
        timeout_seconds: float = 300,
        *,
        live_instance_ids: Collection[str] = (),
        dry_run: bool = False,
        exclude_job_ids: Collection[int] = (),
    ) -> list[OrphanReport]:
        """Kill what is provably left of unwatched running jobs and fail them as orphaned."""
        return await self.reaper.reap(
            timeout_seconds,
            live_instance_ids=live_instance_ids,
            dry_run=dry_run,
            exclude_job_ids=exclude_job_ids,
        )
