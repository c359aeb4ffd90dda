"""The seam between the job runner and where processes run: start, lines, sample, kill.

The runner only talks to an `Executor`, so another one (a cluster, warm standbys) can
stand in without touching channels, pages or the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from server.procs.cgroup import JobCgroup
from server.procs.identity import ProcessIdentity
from server.procs.kill import KillReport
from server.procs.sampler import Sample
from server.procs.spawn import SpawnedProcess


def job_marker(install_id: str, job_id: int) -> str:
    """The value of the marker variable in every process of a job; unique across installs."""
    return f"{install_id}:{job_id}"


@dataclass
class JobHandle:
    job_id: int
    marker: str
    pid: int
    pgid: int
    identity: ProcessIdentity
    spawned: SpawnedProcess
    cgroup: JobCgroup | None = None  # the job's own cgroup, when cgroups are in use


@dataclass(eq=False)
class RemoteJobHandle(JobHandle):
    """A job that runs elsewhere (a cluster): its pid fields are 0 and name nothing here;
    the row records `executor_name` and `remote_id` instead of a process."""

    executor_name: str = ""
    remote_id: str = ""


class Executor(Protocol):
    async def start(
        self, job_id: int, argv: Sequence[str], *, marker: str, cwd: str | None = None
    ) -> JobHandle: ...

    def lines(self, handle: JobHandle) -> AsyncIterator[str]: ...

    async def exited(self, handle: JobHandle) -> None:
        """Return once the job's leader process has ended (its output may still be open)."""
        ...

    def close_output(self, handle: JobHandle) -> None:
        """Stop reading the job's output: its line stream ends after what has arrived."""
        ...

    async def wait(self, handle: JobHandle) -> int: ...

    async def sample(self, handles: Sequence[JobHandle]) -> dict[int, Sample]: ...

    async def kill(self, handle: JobHandle, *, grace: float) -> KillReport: ...

    def end_reason(self, handle: JobHandle) -> str | None:
        """Why the job ended, when only the executor can tell (the memory limit), once
        `wait` has returned; None otherwise."""
        ...

    def release(self, handle: JobHandle) -> None: ...
