"""Warm standbys: built-in pipelines started ahead of need, each waiting for one job.

A standby is `python -m pipeline --standby`, spawned like any job (its own session and
group, stdin the lifeline) with a marker of its own, `INSTALL:standby:UUID`, which no job
id can spell, so the orphan rule (which works from job rows) never touches a waiting
standby. The server lowers it at birth (priority.py), so warming never slows a running
job; once it prints its ready line it waits for one JSON line.

Taking one for a job: raise it back to a cold job's priority (priority.py), then send
the job's argv and its marker. From then on it is the job's process: the runner records
its pid, start ticks and group. The job marker is set in the standby's environment
before it starts anything for the job, so every process started for the job carries it.
The standby itself and its pre-loaded worker still show the standby's marker in /proc
(an environment cannot be rewritten there), so a kill also sweeps that marker. Both are
in the recorded group, and the worker dies with its leader (PDEATHSIG); only a fork
without exec by one of them that left the group would carry the standby marker alone,
which a server restart's orphan sweep (it searches the job marker) would not find. The
pipeline does neither.

A job arriving while the only standby is still warming takes it anyway: it has done part
of a cold start's work already, and finishes it at full priority.

If the group's priority cannot be raised (no root, no CAP_SYS_NICE, RLIMIT_NICE too low),
a niced job would be slowed by everything else; the job then starts cold and no more
standbys are started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.protocol import STANDBY_READY
from server.executors import priority
from server.executors.base import LocalHandle
from server.executors.local import LocalExecutor
from server.procs.cgroup import Cgroups, JobCgroup
from server.procs.identity import MARKER_ENV, group_members
from server.procs.kill import KillReport, Target, kill_tree
from server.procs.sampler import MIB, TreeSampler
from server.procs.spawn import SpawnedProcess, spawn, wait_exited

log = logging.getLogger(__name__)

# A standby that dies before it is ready is retried after this, doubling up to the cap, so a
# broken model cannot become a crash loop.
RETRY_SECONDS = 1.0
RETRY_CAP_SECONDS = 60.0
# Longest a job waits for a standby it took while warming before starting cold instead.
TAKE_WARMING_SECONDS = 60.0
# Stopping a standby that never took a job: nothing to save, so a short grace.
STANDBY_KILL_GRACE = 1.0


@dataclass(eq=False)
class Standby:
    spawned: SpawnedProcess
    marker: str
    ready: bool = False
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)
    cgroup: JobCgroup | None = None  # the job's, once it has taken one

    @property
    def pid(self) -> int:
        return self.spawned.identity.pid


def option(argv: Sequence[str], flag: str) -> str | None:
    """The value of `flag VALUE` or `flag=VALUE` in argv, or None."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


class StandbyExecutor(LocalExecutor):
    """LocalExecutor whose built-in pipeline jobs start on a warm standby when one is ready."""

    def __init__(
        self,
        *,
        count: int,
        model: str,
        threads: int,
        install_id: str,
        command: Sequence[str] = (sys.executable, "-m", "pipeline"),
        max_line_bytes: int = 65536,
        cgroups: Cgroups | None = None,
        kill_grace: float = 5.0,
    ) -> None:
        super().__init__(max_line_bytes=max_line_bytes, cgroups=cgroups, kill_grace=kill_grace)
        self.count = count
        self.model = model
        self.threads = threads
        self.command = list(command)
        self._install_id = install_id
        self._standbys: list[Standby] = []  # warming or ready, not yet taken
        self._taken: dict[int, Standby] = {}  # job id -> the standby running it
        self._handing: set[Standby] = set()  # being handed a job right now
        self._changed = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._failures = 0
        self._memory = TreeSampler()  # its own: a job's CPU baseline starts when it does

    # -- the pool ----------------------------------------------------------------------

    def begin(self) -> None:
        """Start keeping `count` standbys (the app calls this once the store is settled)."""
        self._keeper = asyncio.create_task(self._keep(), name="standby-keeper")

    async def close(self) -> None:
        """Stop keeping standbys and kill the ones that have no job."""
        tasks = [t for t in [self._keeper, *(s.watcher for s in self._standbys)] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # One still finishing its warm-up for a job is stopped too: that job starts cold,
        # and the runner, shutting down, kills it at once.
        standbys, self._standbys = [*self._standbys, *self._handing], []
        await asyncio.gather(*(self._stop(s) for s in standbys), return_exceptions=True)

    async def _keep(self) -> None:
        while True:
            while len(self._standbys) < self.count:
                if self._failures:
                    delay = min(RETRY_CAP_SECONDS, RETRY_SECONDS * 2 ** (self._failures - 1))
                    await asyncio.sleep(delay)
                await self._spawn_one()
            await self._changed.wait()
            self._changed.clear()

    async def _spawn_one(self) -> None:
        marker = f"{self._install_id}:standby:{uuid.uuid4().hex}"
        argv = [*self.command, "--standby", "--model", self.model, "--threads", str(self.threads)]
        argv += ["--nice", "0"]  # the server nices the whole group itself
        try:
            spawned = await spawn(argv, marker=marker, preexec=priority.idle_class)
        except OSError as error:
            log.error("standby: cannot start %s: %s", argv[0], error)
            self._failures += 1
            return
        standby = Standby(spawned, marker)
        with contextlib.suppress(ProcessLookupError):
            # Set here, not by the standby itself: every thread it ever makes inherits it,
            # and a job taking it at once cannot be re-niced by a late os.nice().
            priority.lower_group(spawned.pgid, spawned.identity.pid)
        self._standbys.append(standby)
        standby.watcher = asyncio.create_task(self._watch(standby), name=f"standby-{standby.pid}")

    async def _watch(self, standby: Standby) -> None:
        """Until it is taken: see it warm up, then wait for it to die untaken."""
        if await self._warm_up(standby):
            await wait_exited(standby.spawned.process)
        # Died untaken (killed from outside, or failed to warm up): replace it.
        if not standby.ready:
            self._failures += 1
        log.warning("standby %d ended before it had a job", standby.pid)
        if standby in self._standbys:
            self._standbys.remove(standby)
        await self._stop(standby)
        self._changed.set()

    async def _warm_up(self, standby: Standby) -> bool:
        """Log the standby's lines until its ready line; False if it ended first."""
        stdout = standby.spawned.process.stdout
        assert stdout is not None, "spawn always pipes stdout"
        while not standby.ready:
            raw = await stdout.readline()  # cancel-safe: a partial line stays buffered
            if not raw:
                return False
            line = raw.decode("utf-8", errors="replace").rstrip()
            if line.startswith(STANDBY_READY):
                standby.ready = True
                self._failures = 0
            log.info("standby %d: %s", standby.pid, line)
        return True

    async def _stop(self, standby: Standby) -> None:
        target = Target.of(standby.spawned.pgid, standby.spawned.identity, standby.marker)
        await kill_tree(target, grace=STANDBY_KILL_GRACE, escapees=True)
        process = standby.spawned.process
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STANDBY_KILL_GRACE):
                await process.wait()

    async def status(self) -> dict[str, Any]:
        """For /api/health and the home page: how many standbys wait and warm, and the
        memory they hold."""
        ready = sum(1 for s in self._standbys if s.ready)
        memory_mb = round(await self.memory_bytes() / MIB, 1)  # MiB: shown to a person
        return {"ready": ready, "warming": len(self._standbys) - ready, "memory_mb": memory_mb}

    async def memory_bytes(self) -> int:
        """Bytes held by the standbys not yet taken (leader and loaded worker)."""
        pids = [s.pid for s in self._standbys]
        samples = await asyncio.to_thread(self._memory.sample_many, pids)
        return sum(s.memory_bytes for s in samples.values())

    # -- taking one for a job ----------------------------------------------------------

    def _fits(self, argv: Sequence[str], cwd: str | None, env: Mapping[str, str] | None) -> bool:
        """Only a built-in pipeline job for the standby's model, started as the server does."""
        if cwd is not None or env is not None or list(argv[: len(self.command)]) != self.command:
            return False
        rest = argv[len(self.command) :]
        return (option(rest, "--model") or "tiny.en") == self.model and option(rest, "--processes") in (
            None,
            "1",
        )

    async def _take(self, job_id: int, argv: Sequence[str], marker: str) -> Standby | None:
        """A standby running the job: a ready one, else one still warming (it has done part
        of a cold start's work already, and finishes at full priority); None: start cold."""
        while self._standbys:
            standby = next((s for s in self._standbys if s.ready), self._standbys[0])
            self._standbys.remove(standby)
            self._changed.set()  # warm the next one behind this job
            self._handing.add(standby)
            try:
                if await self._hand_over(standby, job_id, argv, marker):
                    self._taken[job_id] = standby
                    log.info("job %s: started on standby %d", job_id, standby.pid)
                    return standby
            except BaseException:
                await self._stop(standby)  # cancelled mid-way (shutdown): it has no owner
                raise
            finally:
                self._handing.discard(standby)
            await self._stop(standby)
            if self.count == 0:
                return None
        return None

    async def _hand_over(self, standby: Standby, job_id: int, argv: Sequence[str], marker: str) -> bool:
        if standby.watcher is not None:
            standby.watcher.cancel()
            await asyncio.gather(standby.watcher, return_exceptions=True)
        self._memory.forget(standby.pid)
        try:
            await priority.raise_group(standby.spawned.pgid, standby.pid)
        except PermissionError:
            log.warning("standby: may not raise its priority back; jobs start cold from now on")
            self.count = 0
            return False
        except priority.SessionNotRaised as error:
            log.warning("job %s: standby's session stays niced (%s); starting cold", job_id, error)
            return False
        except ProcessLookupError:
            return False  # it just died
        if self.cgroups is not None and not await self._contain(standby, job_id):
            return False
        job = {"argv": list(argv[len(self.command) :]), "env": {MARKER_ENV: marker}}
        stdin = standby.spawned.process.stdin
        assert stdin is not None, "spawn always pipes stdin"
        try:
            # A warming standby reads it once ready; the pipe holds it until then.
            stdin.write(json.dumps(job).encode() + b"\n")
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return False
        if standby.ready:
            return True
        try:
            async with asyncio.timeout(TAKE_WARMING_SECONDS):
                return await self._warm_up(standby)
        except TimeoutError:
            log.warning("job %s: standby %d not ready in time", job_id, standby.pid)
            return False

    async def _contain(self, standby: Standby, job_id: int) -> bool:
        """Move the standby's processes into the job's own cgroup before it is told the job,
        so everything the job forks is born inside and counted from the job's start."""
        assert self.cgroups is not None
        try:
            cgroup = await asyncio.to_thread(self.cgroups.create, job_id)
        except OSError as error:
            log.warning("job %s: no cgroup for the standby (%s); it starts cold", job_id, error)
            return False
        try:
            members = await asyncio.to_thread(group_members, standby.spawned.pgid)
            await asyncio.to_thread(cgroup.adopt, members)
        except OSError as error:
            log.warning("job %s: standby not moved into its cgroup (%s); it starts cold", job_id, error)
            await asyncio.to_thread(cgroup.remove)
            return False
        standby.cgroup = cgroup
        return True

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
        standby = None
        if self.count > 0 and not own_stderr and self._fits(argv, cwd, env):
            standby = await self._take(job_id, argv, marker)
        if standby is None:
            return await super().start(
                job_id, argv, marker=marker, cwd=cwd, env=env, own_stderr=own_stderr
            )
        spawned = standby.spawned
        identity = spawned.identity
        return LocalHandle(
            job_id, marker, identity.pid, spawned.pgid, identity, spawned, cgroup=standby.cgroup
        )

    async def kill(self, handle: LocalHandle, *, grace: float) -> KillReport:
        report = await super().kill(handle, grace=grace)
        standby = self._taken.get(handle.job_id)
        if standby is None:
            return report
        # The standby and its pre-loaded worker carry the standby's marker, not the job's.
        target = Target.of(handle.pgid, handle.identity, standby.marker)
        swept = await kill_tree(target, grace=grace, escapees=True, job_id=handle.job_id)
        if swept.signalled:
            report.signalled = True
            report.sigkilled = report.sigkilled or swept.sigkilled
            report.survivors += swept.survivors
            report.reason += f"; standby-marked: {swept.reason}"
        return report

    def release(self, handle: LocalHandle) -> None:
        self._taken.pop(handle.job_id, None)
        super().release(handle)

