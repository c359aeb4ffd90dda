"""The Store API: every query and write of the running server, on aiosqlite.

One writer connection serializes every write through short BEGIN IMMEDIATE transactions;
a second, query-only connection serves reads, which WAL lets run beside a write. Another
process (the `transcriptor` CLI) may open the same file: busy_timeout makes it wait its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from server.jobs.state import JobStatus, sources_of
from server.store.library import LibraryQueries
from server.store.metrics import MetricsQueries
from server.store.migrate import (
    BUSY_TIMEOUT_SECONDS,
    JOBS_TABLE,
    NOT_UPDATABLE,
    NOW_SQL,
    StoreError,
    backup_to,
    prepare,
)
from server.store.remote import RemoteQueries
from server.store.transcripts import TranscriptQueries
from server.store.webhooks import WebhookQueries

log = logging.getLogger(__name__)
T = TypeVar("T")


def _log_failed_write(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("a database write failed after its caller left", exc_info=error)



def _in_list(statuses: Iterable[str]) -> tuple[str, list[str]]:
    values = [JobStatus(s).value for s in statuses]
    return ", ".join("?" for _ in values), values


class Store(MetricsQueries, RemoteQueries, TranscriptQueries, LibraryQueries, WebhookQueries):
    """The transcriptor database. Open with `await Store.open(path)`, end with `close()`."""

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        install_id: str,
        job_columns: frozenset[str],
    ) -> None:
        self.path = path
        self.install_id = install_id
        self._writer = writer
        self._reader = reader
        self._job_columns = job_columns
        self._write_lock = asyncio.Lock()
        self._writes: set[asyncio.Future[Any]] = set()

    @classmethod
    async def open(cls, path: Path | str) -> Store:
        """Open (creating or upgrading, backup first) the database at path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(prepare, path)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the database {path}: {e}") from e
        writer = await aiosqlite.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        reader: aiosqlite.Connection | None = None
        try:
            reader = await aiosqlite.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
            )
            for db in (writer, reader):
                db.row_factory = sqlite3.Row
                await db.execute("PRAGMA foreign_keys = ON")
                await db.execute("PRAGMA synchronous = NORMAL")
            await reader.execute("PRAGMA query_only = ON")
            rows = await reader.execute_fetchall("SELECT install_id FROM meta WHERE id = 1")
            install_id = next(iter(rows))[0]
            columns = await reader.execute_fetchall(f"PRAGMA table_info({JOBS_TABLE})")
            job_columns = frozenset(r[1] for r in columns)
        except BaseException:
            await writer.close()
            if reader is not None:
                await reader.close()
            raise
        return cls(path, writer, reader, install_id, job_columns)

    async def close(self) -> None:
        """Let started writes finish, then close both connections."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._reader.close()
        await self._writer.close()

    async def backup(self, dest: Path | str) -> None:
        """A consistent, integrity-checked copy of the database at dest (replaced if present)."""
        await asyncio.to_thread(backup_to, self.path, Path(dest))

    # -- plumbing --------------------------------------------------------------------------

    async def _write(self, body: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run body in one BEGIN IMMEDIATE transaction on the writer connection.

        The transaction runs as its own task, shielded: a caller cancelled midway (a handler
        whose client left) must not leave the shared connection inside an open transaction.
        """
        task = asyncio.ensure_future(self._transaction(body))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The caller left; the write goes on, and only this callback sees how it ends
            # (shield marks its error retrieved, so it would vanish without a word).
            task.add_done_callback(_log_failed_write)
            raise

    async def _transaction(self, body: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        async with self._write_lock:
            db = self._writer
            try:
                await db.execute("BEGIN IMMEDIATE")
                result = await body(db)
                await db.execute("COMMIT")
            except BaseException:
                # The connection runs statements in order, so this comes after a BEGIN
                # that was queued even if awaiting it was interrupted.
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await db.execute("ROLLBACK")
                raise
            return result

    async def _fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        rows = await self._reader.execute_fetchall(sql, tuple(params))
        return [dict(r) for r in rows]

    async def _fetchone(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def _update(self, sql: str, params: Iterable[Any]) -> int:
        async def body(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(sql, tuple(params))
            return cursor.rowcount

        return await self._write(body)

    async def _transition(
        self, job_id: int, new: JobStatus, sets: dict[str, Any], *, now_columns: Iterable[str]
    ) -> bool:
        """One conditional UPDATE: moves the job to `new` only from a state that allows it."""
        placeholders, sources = _in_list(sorted(sources_of(new)))
        assignments = ["status = ?"] + [f"{c} = {NOW_SQL}" for c in now_columns]
        assignments += [f"{c} = ?" for c in sets]
        sql = (
            f"UPDATE {JOBS_TABLE} SET {', '.join(assignments)} "
            f"WHERE id = ? AND status IN ({placeholders})"
        )
        changed = await self._update(sql, [new.value, *sets.values(), job_id, *sources])
        return changed == 1

    # -- server instances ------------------------------------------------------------------

    async def register_instance(self, *, pid: int, start_ticks: int, boot_id: str) -> str:
        """Record a new server instance; returns its id (uuid4 hex)."""
        instance_id = uuid.uuid4().hex
        await self._update(
            "INSERT INTO server_instances (id, pid, start_ticks, boot_id, started_at, last_seen)"
            f" VALUES (?, ?, ?, ?, {NOW_SQL}, {NOW_SQL})",
            (instance_id, pid, start_ticks, boot_id),
        )
        return instance_id

    async def touch_instance(self, instance_id: str) -> None:
        await self._update(
            f"UPDATE server_instances SET last_seen = {NOW_SQL} WHERE id = ?", (instance_id,)
        )

    async def list_instances(self) -> list[dict[str, Any]]:
        return await self._fetchall("SELECT * FROM server_instances ORDER BY started_at")

    # -- jobs ------------------------------------------------------------------------------

    async def create_job(
        self,
        *,
        filename: str,
        original_path: str,
        duration_seconds: float | None,
        model: str,
        language: str,
        processes: int,
        threads: int,
        chunk_seconds: float,
        overlap_seconds: float,
        on_disconnect: str = "cancel",
        output_path: str | None = None,
        source: str | None = None,
        pipeline_options: str | None = None,
    ) -> dict[str, Any]:
        """A new queued job (progress 0, created_at now); returns its row."""
        if on_disconnect not in ("cancel", "keep"):
            raise ValueError(f"on_disconnect must be 'cancel' or 'keep', not {on_disconnect!r}")
        if processes < 1 or threads < 1:
            raise ValueError("processes and threads must be at least 1")
        params = (
            filename, original_path, duration_seconds, model, language, processes, threads,
            chunk_seconds, overlap_seconds, on_disconnect, output_path, source, pipeline_options,
        )  # fmt: skip

        async def body(db: aiosqlite.Connection) -> dict[str, Any]:
            cursor = await db.execute(
                f"""INSERT INTO {JOBS_TABLE} (filename, original_path, duration_seconds, model,
                    language, processes, threads, chunk_seconds, overlap_seconds, on_disconnect,
                    output_path, source, pipeline_options, status, progress, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{JobStatus.QUEUED}', 0, {NOW_SQL})""",
                params,
            )
            # Read back rather than RETURNING, which hands out values before column affinity.
            rows = await db.execute_fetchall(
                f"SELECT * FROM {JOBS_TABLE} WHERE id = ?", (cursor.lastrowid,)
            )
            return dict(next(iter(rows)))

        return await self._write(body)

    async def get_job(self, job_id: int) -> dict[str, Any] | None:
        return await self._fetchone(f"SELECT * FROM {JOBS_TABLE} WHERE id = ?", (job_id,))

    async def list_jobs(
        self, *, limit: int = 200, statuses: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Jobs, newest first, optionally only those in `statuses`."""
        if statuses is None:
            return await self._fetchall(
                f"SELECT * FROM {JOBS_TABLE} ORDER BY id DESC LIMIT ?", (limit,)
            )
        placeholders, values = _in_list(statuses)
        if not values:
            return []
        return await self._fetchall(
            f"SELECT * FROM {JOBS_TABLE} WHERE status IN ({placeholders}) ORDER BY id DESC LIMIT ?",
            (*values, limit),
        )

    async def queued_jobs(self) -> list[dict[str, Any]]:
        """Queued jobs in queue order (oldest first)."""
        return await self._fetchall(
            f"SELECT * FROM {JOBS_TABLE} WHERE status = '{JobStatus.QUEUED}' ORDER BY id"
        )

    async def update_job(self, job_id: int, **fields: Any) -> None:
        """Plain column updates (log_file_path, output_path, ...); never id or status."""
        if not fields:
            return
        bad = [f for f in fields if f in NOT_UPDATABLE or f not in self._job_columns]
        if bad:
            raise ValueError(f"update_job cannot set {', '.join(sorted(bad))}")
        assignments = ", ".join(f'"{name}" = ?' for name in fields)
        await self._update(
            f"UPDATE {JOBS_TABLE} SET {assignments} WHERE id = ?", (*fields.values(), job_id)
        )

    async def register_process(
        self,
        job_id: int,
        *,
        pid: int,
        pgid: int,
        start_ticks: int,
        boot_id: str,
        instance_id: str | None = None,
        log_file_path: str | None = None,
    ) -> bool:
        """queued -> running with the process that runs it; False if not allowed now."""
        columns: dict[str, Any] = {
            "process_id": pid,
            "process_group_id": pgid,
            "process_start_ticks": start_ticks,
            "process_boot_id": boot_id,
            "instance_id": instance_id,
        }
        if log_file_path is not None:
            columns["log_file_path"] = log_file_path
        return await self._transition(
            job_id,
            JobStatus.RUNNING,
            columns,
            now_columns=("started_at", "last_heartbeat"),
        )

    async def update_heartbeat(self, job_id: int) -> None:
        await self.update_heartbeats((job_id,))

    async def update_heartbeats(self, job_ids: Iterable[int]) -> None:
        """last_heartbeat = now for each running job, in one transaction."""
        ids = [(i,) for i in job_ids]
        if not ids:
            return

        async def body(db: aiosqlite.Connection) -> None:
            await db.executemany(
                f"UPDATE {JOBS_TABLE} SET last_heartbeat = {NOW_SQL} "
                f"WHERE id = ? AND status = '{JobStatus.RUNNING}'",
                ids,
            )

        await self._write(body)

    async def set_progress(self, job_id: int, progress: float) -> None:
        """Progress (clamped to 0-1) of a job that has not ended."""
        if not math.isfinite(progress):
            raise ValueError(f"progress must be a finite number, not {progress!r}")
        value = min(1.0, max(0.0, float(progress)))
        await self._update(
            f"UPDATE {JOBS_TABLE} SET progress = ? "
            f"WHERE id = ? AND status IN ('{JobStatus.QUEUED}', '{JobStatus.RUNNING}')",
            (value, job_id),
        )

    async def get_active_jobs(self) -> list[dict[str, Any]]:
        return await self._fetchall(
            f"SELECT * FROM {JOBS_TABLE} WHERE status = '{JobStatus.RUNNING}' ORDER BY id"
        )

    async def get_orphaned_jobs(self, timeout_seconds: float) -> list[dict[str, Any]]:
        """Running jobs whose heartbeat is older than timeout_seconds, or missing."""
        if not math.isfinite(timeout_seconds) or timeout_seconds < 0:
            raise ValueError(f"timeout_seconds must be >= 0, not {timeout_seconds!r}")
        # julianday() compares instants whether or not a time carries fractional seconds.
        return await self._fetchall(
            f"""SELECT * FROM {JOBS_TABLE} WHERE status = '{JobStatus.RUNNING}' AND (
                    last_heartbeat IS NULL OR julianday(last_heartbeat) IS NULL
                    OR julianday(last_heartbeat) < julianday('now', ?))
                ORDER BY id""",
            (f"-{float(timeout_seconds)} seconds",),
        )

    async def complete_job(self, job_id: int, *, exit_code: int = 0) -> bool:
        """running -> completed (progress 1); False, changing nothing, if not allowed."""
        return await self._transition(
            job_id,
            JobStatus.COMPLETED,
            {"exit_code": exit_code, "progress": 1.0},
            now_columns=("finished_at",),
        )

    async def fail_job(
        self, job_id: int, error_message: str, *, exit_code: int | None = None
    ) -> bool:
        """queued|running -> failed; False, changing nothing, if the job already ended."""
        return await self._transition(
            job_id,
            JobStatus.FAILED,
            {"error_message": error_message, "exit_code": exit_code},
            now_columns=("finished_at",),
        )

    async def requeue_interrupted(self, job_id: int) -> bool:
        """running -> queued for a job the server's going away interrupted, to be resumed:
        the process it ran is forgotten; started_at stays, the mark of a resume."""
        forget = ("process_id", "process_group_id", "process_start_ticks", "process_boot_id")
        columns: dict[str, Any] = dict.fromkeys((*forget, "instance_id", "last_heartbeat"))
        return await self._transition(job_id, JobStatus.QUEUED, columns, now_columns=())

    async def cancel_job(self, job_id: int, reason: str, *, exit_code: int | None = None) -> bool:
        """queued|running -> cancelled; False, changing nothing, if the job already ended."""
        return await self._transition(
            job_id,
            JobStatus.CANCELLED,
            {"cancel_reason": reason, "exit_code": exit_code},
            now_columns=("finished_at",),
        )
