"""The seam between the job runner and where processes run: start, lines, wait, kill.

The runner only talks to an `Executor`, so another one (a cluster, warm standbys) can
stand in without touching channels, pages or the store. `wait` says how a job ended
(`Exit`: its code and cause); the executor itself records the running job in the store
(`register`), so the runner never asks what kind of handle it holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from server.procs.cgroup import JobCgroup
from server.procs.identity import ProcessIdentity
from server.procs.kill import KillReport
from server.procs.sampler import Sample
from server.procs.spawn import SpawnedProcess

if TYPE_CHECKING:
    from server.store import Store


def job_marker(install_id: str, job_id: int) -> str:
    """The value of the marker variable in every process of a job; unique across installs."""
    return f"{install_id}:{job_id}"


class ExitCause(Enum):
    EXITED = "exited"  # the program ended by itself or by a signal; the code says how
    MEMORY_LIMIT = "memory limit"  # the kernel's OOM killer, at the job's memory limit
    LOST = "lost"  # where it ran can no longer tell (a cluster reset or unreachable)


@dataclass(frozen=True)
class Exit:
    """How a job's program ended: its exit code (negative: the signal) and why."""

    code: int
    cause: ExitCause = ExitCause.EXITED
    detail: str | None = None  # what the executor knows of the cause, for the error message


@dataclass(eq=False)
class JobHandle:
    """A started job, as its executor knows it."""

    job_id: int
    marker: str


@dataclass(eq=False)
class LocalHandle(JobHandle):
    """A job whose leader is a process on this machine."""

    pid: int
    pgid: int
    identity: ProcessIdentity
    spawned: SpawnedProcess
    cgroup: JobCgroup | None = None  # the job's own cgroup, when cgroups are in use


H = TypeVar("H", bound=JobHandle)
H_co = TypeVar("H_co", bound=JobHandle, covariant=True)


class Executor(Protocol[H]):
    async def start(
        self, job_id: int, argv: Sequence[str], *, marker: str, cwd: str | None = None
    ) -> H: ...

    async def register(self, handle: H, store: Store, *, instance_id: str, log_file_path: str) -> bool:
        """Record the started job in its row (queued -> running); False if not allowed now."""
        ...

    def lines(self, handle: H) -> AsyncIterator[str]: ...

    async def exited(self, handle: H) -> None:
        """Return once the job's leader process has ended (its output may still be open)."""
        ...

    def close_output(self, handle: H) -> None:
        """Stop reading the job's output: its line stream ends after what has arrived."""
        ...

    async def wait(self, handle: H) -> Exit: ...

    async def sample(self, handles: Sequence[H]) -> dict[int, Sample]: ...

    async def kill(self, handle: H, *, grace: float) -> KillReport: ...

    def release(self, handle: H) -> None: ...


class Reattaching(Protocol[H_co]):
    """An executor that can follow a job another server instance started."""

    def reattach(self, job: dict[str, Any], marker: str, skip_lines: int) -> H_co: ...
