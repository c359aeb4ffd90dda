"""What becomes of ended jobs: deleted for good, or retried as a new job on the same upload."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite

from server.jobs.state import FINAL_STATES, JobStatus
from server.store.migrate import JOBS_TABLE, NOW_SQL

# Retrying is for jobs that did not give a transcript.
RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
# What a retry copies: the file and every option; not its source (a retry comes from the
# pages or the API, whoever started the first), nor anything about how it ran.
_RETRY_COPIES = (
    "filename", "original_path", "duration_seconds", "model", "language", "processes",
    "threads", "chunk_seconds", "overlap_seconds", "on_disconnect", "pipeline_options",
    "webhook_url",
)  # fmt: skip


class JobStateError(Exception):
    """The job exists but is in a state that does not allow the change."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _in(statuses: frozenset[JobStatus]) -> str:
    return ", ".join(f"'{s.value}'" for s in sorted(statuses))


class LibraryQueries:
    """The Store's delete and retry; the Store provides the connection plumbing."""

    _write: Callable[[Callable[[aiosqlite.Connection], Awaitable[Any]]], Awaitable[Any]]
    _fetchone: Callable[..., Awaitable[dict[str, Any] | None]]

    async def delete_job(self, job_id: int) -> dict[str, Any] | None:
        """Delete an ended job's row (its metrics, transcript, search entries, edits and
        webhooks go with it); returns the row as it was, with `upload_shared` True when
        another job still names the same upload. None if there is no such job; raises
        JobStateError if it has not ended."""

        async def body(db: aiosqlite.Connection) -> dict[str, Any] | None:
            rows = list(await db.execute_fetchall(f"SELECT * FROM {JOBS_TABLE} WHERE id = ?", (job_id,)))
            if not rows:
                return None
            job = dict(rows[0])
            if JobStatus(job["status"]) not in FINAL_STATES:
                raise JobStateError(job["status"], f"job {job_id} is {job['status']}; stop it first")
            await db.execute(f"DELETE FROM {JOBS_TABLE} WHERE id = ?", (job_id,))
            others = list(
                await db.execute_fetchall(
                    f"SELECT 1 FROM {JOBS_TABLE} WHERE original_path = ? LIMIT 1",
                    (job["original_path"],),
                )
            )
            job["upload_shared"] = bool(others)
            return job

        result: dict[str, Any] | None = await self._write(body)
        return result

    async def retry_job(self, job_id: int) -> dict[str, Any] | None:
        """A new queued job with the failed or cancelled job's upload and options (its
        `retry_of` names the first); the first stays as it was. None if there is no such
        job; raises JobStateError unless it failed or was cancelled."""
        copies = ", ".join(f'"{c}"' for c in _RETRY_COPIES)

        async def body(db: aiosqlite.Connection) -> dict[str, Any] | None:
            rows = list(await db.execute_fetchall(f"SELECT status FROM {JOBS_TABLE} WHERE id = ?", (job_id,)))
            if not rows:
                return None
            status = rows[0][0]
            if JobStatus(status) not in RETRYABLE:
                message = f"job {job_id} is {status}; only a failed or cancelled job can be retried"
                raise JobStateError(status, message)
            cursor = await db.execute(
                f"""INSERT INTO {JOBS_TABLE} ({copies}, retry_of, status, progress, created_at)
                SELECT {copies}, id, '{JobStatus.QUEUED}', 0, {NOW_SQL}
                FROM {JOBS_TABLE} WHERE id = ? AND status IN ({_in(RETRYABLE)})""",
                (job_id,),
            )
            new = await db.execute_fetchall(f"SELECT * FROM {JOBS_TABLE} WHERE id = ?", (cursor.lastrowid,))
            return dict(next(iter(new)))

        result: dict[str, Any] | None = await self._write(body)
        return result
