"""The job states and the transitions allowed between them, in one place."""

from __future__ import annotations

from enum import StrEnum


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

ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # A queued job can fail before it runs: the executable is missing, or it was orphaned.
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class InvalidTransition(ValueError):
    pass


def can_transition(current: str, new: str) -> bool:
    return JobStatus(new) in ALLOWED_TRANSITIONS[JobStatus(current)]


def check_transition(current: str, new: str) -> None:
    if not can_transition(current, new):
        raise InvalidTransition(f"job cannot go from {current} to {new}")


# Cancel reasons the server records; scripts and the pages match on these texts.
REASON_DISCONNECTED = "all clients disconnected"
REASON_STOPPED = "stopped by user"
REASON_SHUTDOWN = "server shutdown"
# The HTTP request that is the job (the OpenAI API) ended before its answer did.
REASON_CLIENT_DISCONNECTED = "client disconnected"
ORPHANED_PREFIX = "orphaned:"


def sources_of(new: str) -> frozenset[JobStatus]:
    """The states a job may be in to move to `new`; the store's conditional UPDATEs use it."""
    target = JobStatus(new)
    return frozenset(s for s, allowed in ALLOWED_TRANSITIONS.items() if target in allowed)
