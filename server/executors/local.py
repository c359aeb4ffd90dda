"""The default executor: each job a session on this machine, in its own cgroup where the
kernel allows one (else a process group found by identity and marker)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING

import psutil

from server.executors.base import Exit, ExitCause, LocalHandle
from server.executors.drain import OUTPUT_DRAIN_SECONDS
from server.procs.cgroup import Cgroups, JobCgroup, kill_cgroup
from server.procs.kill import KillReport, Target, kill_tree
from server.procs.lines import read_lines
from server.procs.sampler import MIB, Sample, TreeSampler
from server.procs.spawn import spawn, wait_exited

if TYPE_CHECKING:
    from server.store import Store

log = logging.getLogger(__name__)


class LocalExecutor:
    def __init__(
        self,
        *,
        max_line_bytes: int = 65536,
        cgroups: Cgroups | None = None,
        kill_grace: float = 5.0,
    ) -> None:
        self.sampler = TreeSampler()
        self.cgroups = cgroups
        self._max_line_bytes = max_line_bytes
        self._kill_grace = kill_grace
        # job id -> (cpu usec, monotonic time) of the last sample, for a real delta.
        self._cpu: dict[int, tuple[int, float]] = {}
        self._started: dict[int, float] = {}

    async def start(
        self,
        job_id: int,
        argv: Sequence[str],
        *,
        marker: str,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        own_stderr: bool = False,
    ) -> LocalHandle:
        cgroup: JobCgroup | None = None
        if self.cgroups is not None:
            try:
                cgroup = await asyncio.to_thread(self.cgroups.create, job_id)
            except OSError as error:
                raise OSError(f"cannot create the job's cgroup: {error}") from error
        try:
            spawned = await spawn(
                argv,
                marker=marker,
                cwd=cwd,
                env=env,
                own_stderr=own_stderr,
                preexec=cgroup.preexec() if cgroup else None,
            )
        except subprocess.SubprocessError as error:
            assert cgroup is not None  # only preexec raises this
            cgroup.remove()
            raise OSError(f"cannot place the job in its cgroup {cgroup.path}: {error}") from error
        except OSError:
            if cgroup is not None:
                cgroup.remove()
            raise
        self._started[job_id] = time.monotonic()
        return LocalHandle(
            job_id=job_id,
            marker=marker,
            pid=spawned.identity.pid,
            pgid=spawned.pgid,
            identity=spawned.identity,
            spawned=spawned,
            cgroup=cgroup,
        )

    async def register(
        self, handle: LocalHandle, store: Store, *, instance_id: str, log_file_path: str
    ) -> bool:
        return await store.register_process(
            handle.job_id,
            pid=handle.pid,
            pgid=handle.pgid,
            start_ticks=handle.identity.start_ticks,
            boot_id=handle.identity.boot_id,
            instance_id=instance_id,
            log_file_path=log_file_path,
        )

    def lines(self, handle: LocalHandle) -> AsyncIterator[str]:
        stdout = handle.spawned.process.stdout
        assert stdout is not None, "spawn always pipes stdout"
        return read_lines(stdout, max_line_bytes=self._max_line_bytes)

    async def exited(self, handle: LocalHandle) -> None:
        await wait_exited(handle.spawned.process)

    async def wait(self, handle: LocalHandle) -> Exit:
        """The exit code; what the job left in its cgroup is killed, and an OOM kill at
        the job's memory limit is the cause."""
        process = handle.spawned.process
        await wait_exited(process)
        try:
            # After drain() the pipe is closed; this bounds a caller that did not drain.
            async with asyncio.timeout(OUTPUT_DRAIN_SECONDS):
                code = await process.wait()
        except TimeoutError:
            # The leader has exited but something we could not kill holds its output open
            # (it shed our marker): stop reading so the pipe does not keep us waiting.
            _close_pipes(process)
            code = await process.wait()
        kills = await self._end_cgroup(handle, handle.cgroup) if handle.cgroup is not None else 0
        if kills and self.cgroups is not None and self.cgroups.memory_limit is not None:
            limit = self.cgroups.memory_limit // MIB
            detail = f"killed by the job memory limit of {limit} MiB ({kills} process(es) OOM-killed)"
            return Exit(code, ExitCause.MEMORY_LIMIT, detail)
        return Exit(code)

    async def _end_cgroup(self, handle: LocalHandle, cgroup: JobCgroup) -> int:
        """A job is over when its program is: what it left in its cgroup (a daemon that
        closed its output) is killed and the cgroup removed; returns its OOM kill count."""
        if cgroup.populated():
            report = await kill_cgroup(cgroup, grace=self._kill_grace, job_id=handle.job_id)
            log.info("job %s: left processes in its cgroup: %s", handle.job_id, report.reason)
        kills = cgroup.oom_kills()
        cgroup.remove()
        return kills

    async def sample(self, handles: Sequence[LocalHandle]) -> dict[int, Sample]:
        def sample_all() -> dict[int, Sample]:
            trees = [h for h in handles if h.cgroup is None]
            by_pid = self.sampler.sample_many([h.pid for h in trees])
            out = {h.job_id: by_pid[h.pid] for h in trees}
            for h in handles:
                if h.cgroup is not None:
                    out[h.job_id] = self._sample_cgroup(h, h.cgroup)
            return out

        # psutil reads /proc for every process of every tree: keep it off the event loop.
        return await asyncio.to_thread(sample_all)

    def _sample_cgroup(self, handle: LocalHandle, cgroup: JobCgroup) -> Sample:
        """The kernel's own counts: CPU of every process that ever ran in the cgroup,
        short-lived ones included, and its memory charge (and peak)."""
        now = time.monotonic()
        started = self._started.get(handle.job_id, now)
        usec = cgroup.cpu_usec() or 0
        last_usec, last_time = self._cpu.get(handle.job_id, (0, started))
        self._cpu[handle.job_id] = (usec, now)
        wall = now - last_time
        cpu = 100.0 * (usec - last_usec) / 1e6 / wall if wall > 0 else 0.0
        pids = cgroup.pids()
        current, peak = cgroup.memory()
        if current is None:  # memory not in any usable hierarchy: sum the members' RSS
            current = _rss(pids)
        return Sample(
            running=bool(pids),
            pid=handle.pid,
            cpu_percent=max(0.0, cpu),
            memory_bytes=current,
            elapsed_seconds=now - started,
            num_processes=len(pids),
            memory_peak_bytes=peak,
        )

    async def kill(self, handle: LocalHandle, *, grace: float) -> KillReport:
        if handle.cgroup is not None:
            return await kill_cgroup(handle.cgroup, grace=grace, job_id=handle.job_id)
        target = Target.of(handle.pgid, handle.identity, handle.marker)
        return await kill_tree(target, grace=grace, escapees=True, job_id=handle.job_id)

    def close_output(self, handle: LocalHandle) -> None:
        process = handle.spawned.process
        if process.returncode is not None:
            # Normally already closed; if a process we could not kill still holds the
            # output pipe, this drops our end of it instead of keeping it for its life.
            _close_pipes(process)

    def release(self, handle: LocalHandle) -> None:
        process = handle.spawned.process
        self.close_output(handle)
        stdin = process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        self.sampler.forget(handle.pid)
        if handle.cgroup is not None and handle.cgroup.exists():
            # wait() did not get to it (the runner failed): kill, and remove if empty; an
            # orphan sweep removes it otherwise.
            if handle.cgroup.populated():
                handle.cgroup.kill_all()
            handle.cgroup.remove()
        for table in (self._cpu, self._started):
            table.pop(handle.job_id, None)


def _rss(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    return total


def _close_pipes(process: asyncio.subprocess.Process) -> None:
    """Drop our ends of process's pipes now, whoever still holds the other ends.

    asyncio has no public way to close a subprocess's pipes early (on 3.11 `wait()` also
    waits for them to close), so this closes its transport. Only once the leader has exited:
    on a live process the transport's close() kills it.
    """
    process._transport.close()  # type: ignore[attr-defined]
