"""Queries for jobs that run elsewhere (a Ray cluster): no local process in their row."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from server.jobs.state import JobStatus
from server.store.migrate import JOBS_TABLE


class RemoteQueries:
    """The Store's methods for remote jobs; the Store provides the plumbing."""

    _transition: Callable[..., Awaitable[bool]]
    _update: Callable[[str, Iterable[Any]], Awaitable[int]]

    async def register_remote(
        self, job_id: int, *, instance_id: str | None, log_file_path: str | None = None
    ) -> bool:
        """queued -> running for a job a cluster runs (its row already names the remote
        job); False if not allowed now."""
        columns: dict[str, Any] = {"instance_id": instance_id}
        if log_file_path is not None:
            columns["log_file_path"] = log_file_path
        return bool(
            await self._transition(
                job_id, JobStatus.RUNNING, columns, now_columns=("started_at", "last_heartbeat")
            )
        )

    async def consume_job_secret(self, job_id: int, secret_hash: str) -> bool:
        """True once for the job's secret, which is then forgotten (a second use fails)."""
        changed = await self._update(
            f"UPDATE {JOBS_TABLE} SET job_secret_hash = NULL "
            f"WHERE id = ? AND job_secret_hash = ? AND status IN (?, ?)",
            (job_id, secret_hash, JobStatus.QUEUED.value, JobStatus.RUNNING.value),
        )
        return changed == 1
