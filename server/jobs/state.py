"""A job's states, in one place: the stored status, the running job's phase, and how a
job's ending is decided and recorded.

Two machines, as in supervisor: `JobStatus` is what the row says (queued, running, and
three endings); `Phase` is where a running job's task is (starting, running, stopping,
draining, ended), changed only through `PhaseMachine.change`, which refuses a move the
table does not allow. `decide_ending` is the one place an ending's status is chosen and
`record_ending` the one place a final status is written.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.store import Store


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})

ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # A queued job can fail before it runs: the executable is missing, or it was orphaned.
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    # Back to the queue only when the server going away interrupted it (to be resumed).
    JobStatus.RUNNING: frozenset(
        {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def sources_of(new: str) -> frozenset[JobStatus]:
    """The states a job may be in to move to `new`; the store's conditional UPDATEs use it."""
    target = JobStatus(new)
    return frozenset(s for s, allowed in ALLOWED_TRANSITIONS.items() if target in allowed)


# Cancel reasons the server records; scripts and the pages match on these texts.
REASON_DISCONNECTED = "all clients disconnected"
REASON_STOPPED = "stopped by user"
REASON_SHUTDOWN = "server shutdown"
REASON_BEFORE_START = "cancelled before start"
# The HTTP request that is the job (the OpenAI API) ended before its answer did.
REASON_CLIENT_DISCONNECTED = "client disconnected"
ORPHANED_PREFIX = "orphaned:"
STALLED_PREFIX = "stalled:"
# A job the server's going away interrupted, queued again to be resumed.
INTERRUPTED_PREFIX = "interrupted:"


class Phase(Enum):
    """Where a running job's task is. Only the runner's task moves it."""

    STARTING = "starting"  # the row is being prepared, the process is being spawned
    RUNNING = "running"  # the process runs and its output is pumped
    STOPPING = "stopping"  # a cancel is killing it; its output is still pumped
    DRAINING = "draining"  # the program exited; what it left holds the output open
    ENDED = "ended"  # the ending is recorded


ALLOWED_PHASES: dict[Phase, frozenset[Phase]] = {
    Phase.STARTING: frozenset({Phase.RUNNING, Phase.STOPPING, Phase.ENDED}),
    Phase.RUNNING: frozenset({Phase.STOPPING, Phase.DRAINING, Phase.ENDED}),
    Phase.STOPPING: frozenset({Phase.DRAINING, Phase.ENDED}),
    Phase.DRAINING: frozenset({Phase.STOPPING, Phase.ENDED}),
    Phase.ENDED: frozenset(),
}


class PhaseError(RuntimeError):
    pass


class PhaseMachine:
    """A running job's phase; `change` is the only way it moves (supervisor's change_state).
    A move to stopping carries its reason, kept as `stop_reason`."""

    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self.stop_reason: str | None = None  # why it is stopping; set by the move

    def change(self, new: Phase, *, reason: str | None = None) -> None:
        if new not in ALLOWED_PHASES[self.phase]:
            raise PhaseError(f"a job cannot go from {self.phase.value} to {new.value}")
        if (new is Phase.STOPPING) != (reason is not None):
            raise PhaseError("a move to stopping, and only that move, carries a reason")
        self.phase = new
        if reason is not None:
            self.stop_reason = reason

    def expect(self, *phases: Phase) -> None:
        if self.phase not in phases:
            wanted = " or ".join(p.value for p in phases)
            raise PhaseError(f"job is {self.phase.value}, expected {wanted}")

    @property
    def has_process(self) -> bool:
        return self.phase in (Phase.RUNNING, Phase.STOPPING, Phase.DRAINING)


@dataclass(frozen=True)
class Ending:
    """How a job ended: its final status, and why (exit code, signal, reason)."""

    status: JobStatus
    exit_code: int | None = None
    message: str | None = None  # error_message of a failed job
    cancel_reason: str | None = None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def decide_ending(
    code: int | None,
    *,
    cancel_reason: str | None,
    detail: str | None = None,
    cause: str | None = None,
    failed: str | None = None,
) -> Ending:
    """The status a job that ran ends with: failed if the server stopped it for a fault of
    its own (`failed`: a stall), cancelled if it was cancelled, else by its exit. `cause`
    is what the executor knows killed it (a memory limit), put first."""
    if failed is not None:
        return Ending(JobStatus.FAILED, code, message=failed)
    if cancel_reason is not None:
        return Ending(JobStatus.CANCELLED, code, cancel_reason=cancel_reason)
    if code == 0:
        return Ending(JobStatus.COMPLETED, 0)
    if code is None:
        return Ending(JobStatus.FAILED, None, message=detail)
    message = describe_exit(code) + (f": {detail}" if detail else "")
    if cause:
        message = f"{cause}; {message}"
    return Ending(JobStatus.FAILED, code, message=message)


def keeps_transcript(job: Mapping[str, Any]) -> bool:
    """Whether the job's transcript is a result: a completed job's, or a live session's
    however it ended (it writes each utterance as it completes; a closed tab cancels it)."""
    status = JobStatus(job["status"])
    return status is JobStatus.COMPLETED or (job.get("source") == "live" and status.is_final)


def resumable(job: Mapping[str, Any]) -> bool:
    """Whether a job the server's going away interrupted is taken up again: one from an
    upload run here. A cluster's job is re-attached instead; one whose input is a client's
    request (the OpenAI API) ended with that request."""
    return job.get("executor") in (None, "local") and job.get("source") is None


def failure(message: str) -> Ending:
    """An ending decided without an exit code: failed to start, orphaned, an internal error."""
    return Ending(JobStatus.FAILED, None, message=message)


def cancellation(reason: str) -> Ending:
    return Ending(JobStatus.CANCELLED, None, cancel_reason=reason)


async def record_ending(store: Store, job_id: int, ending: Ending) -> bool:
    """Write a job's final status: the one place one is written. False if the job had
    already ended (two endings racing: the first one stands)."""
    if ending.status is JobStatus.COMPLETED:
        return await store.complete_job(job_id, exit_code=ending.exit_code or 0)
    if ending.status is JobStatus.CANCELLED:
        assert ending.cancel_reason is not None
        return await store.cancel_job(job_id, ending.cancel_reason, exit_code=ending.exit_code)
    if ending.status is JobStatus.FAILED:
        return await store.fail_job(job_id, ending.message or "failed", exit_code=ending.exit_code)
    raise ValueError(f"{ending.status} is not an ending")
