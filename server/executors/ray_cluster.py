"""The Ray Jobs API, as the server uses it: Ray's own `JobSubmissionClient`, off the loop.

The client's constructor and its methods are blocking HTTP calls, so each runs in a
thread; `tail_job_logs` alone is async. `ray` is imported only here and only on first
use, so a server with the local executor never needs it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Ray's JobStatus values, as text (so callers need not import ray).
PENDING, RUNNING = "PENDING", "RUNNING"
SUCCEEDED, FAILED, STOPPED = "SUCCEEDED", "FAILED", "STOPPED"
TERMINAL = frozenset({SUCCEEDED, FAILED, STOPPED})


class ClusterError(OSError):
    """The Ray cluster could not be reached or refused a request; the message says which."""


class NoSuchRayJob(ClusterError):
    pass


@dataclass(frozen=True)
class RayJobInfo:
    submission_id: str
    status: str
    driver_exit_code: int | None
    node_id: str | None
    message: str | None
    metadata: dict[str, str]

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def _info(submission_id: str, raw: Any) -> RayJobInfo:
    return RayJobInfo(
        submission_id=submission_id,
        status=str(getattr(raw.status, "value", raw.status)),
        driver_exit_code=getattr(raw, "driver_exit_code", None),
        node_id=getattr(raw, "driver_node_id", None),
        message=getattr(raw, "message", None),
        metadata=dict(getattr(raw, "metadata", None) or {}),
    )


class RayCluster:
    """One Ray cluster's job API. The client is made on first use and again after a
    failure, so a head that is down at start-up does not stop the server."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def client(self) -> Any:
        async with self._lock:
            if self._client is None:
                try:
                    from ray.job_submission import JobSubmissionClient
                except ImportError as error:
                    raise ClusterError(
                        "--executor ray needs Ray: pip install 'transcriptor[ray]'"
                    ) from error
                try:
                    self._client = await asyncio.to_thread(JobSubmissionClient, self.address)
                except Exception as error:
                    raise ClusterError(f"cannot reach the Ray cluster at {self.address}: {error}") from error
            return self._client

    async def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        client = await self.client()
        try:
            return await asyncio.to_thread(getattr(client, method), *args, **kwargs)
        except Exception as error:
            text = str(error)
            if "does not exist" in text or "404" in text or "not found" in text.lower():
                raise NoSuchRayJob(f"{what}: no such Ray job") from error
            self._client = None  # made afresh next time: the head may have restarted
            raise ClusterError(f"{what} on the Ray cluster at {self.address}: {error}") from error

    async def submit(
        self, *, submission_id: str, entrypoint: str, metadata: dict[str, str], env: dict[str, str]
    ) -> str:
        result = await self._call(
            f"submitting {submission_id}",
            "submit_job",
            entrypoint=entrypoint,
            submission_id=submission_id,
            metadata=metadata,
            runtime_env={"env_vars": env},
        )
        return str(result)

    async def info(self, submission_id: str) -> RayJobInfo:
        raw = await self._call(f"looking up {submission_id}", "get_job_info", submission_id)
        return _info(submission_id, raw)

    async def stop(self, submission_id: str) -> bool:
        """Ask Ray to stop the job: SIGTERM to its processes, SIGKILL after
        RAY_JOB_STOP_WAIT_TIME_S (cluster-wide). False if it had already ended."""
        return bool(await self._call(f"stopping {submission_id}", "stop_job", submission_id))

    async def logs(self, submission_id: str) -> str:
        return str(await self._call(f"reading the log of {submission_id}", "get_job_logs", submission_id))

    async def jobs_of(self, install_id: str) -> list[RayJobInfo]:
        """Every Ray job this install submitted (by its metadata)."""
        raw = await self._call("listing jobs", "list_jobs")
        found = []
        for job in raw:
            if (job.metadata or {}).get("transcriptor_install") == install_id and job.submission_id:
                found.append(_info(job.submission_id, job))
        return found

    async def tail(self, submission_id: str, queue: asyncio.Queue[str | BaseException | None]) -> None:
        """Put each chunk of the job's log on `queue`, then None when Ray closes the tail
        (or the exception that ended it)."""
        try:
            client = await self.client()
            async for chunk in client.tail_job_logs(submission_id):
                await queue.put(chunk)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await queue.put(error)
            return
        await queue.put(None)
