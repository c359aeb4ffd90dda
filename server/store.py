"""All SQL: the schema (schema.sql), migrations with a backup first, and the job functions.

One writer connection serializes every write through short BEGIN IMMEDIATE transactions;
a second, query-only connection serves reads, which WAL lets run beside a write. Another
process (the `transcriptor` CLI) may open the same file: busy_timeout makes it wait its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from server.jobstate import JobStatus, sources_of
from server.resources import resource_path

T = TypeVar("T")

SCHEMA_PATH = resource_path("schema.sql")
SCHEMA_VERSION = 1
JOBS_TABLE = "transcription_jobs"
# Long enough that 50 concurrent writers plus a CLI in another process never see
# "database is locked"; each write transaction holds the lock for well under a millisecond.
BUSY_TIMEOUT_SECONDS = 30.0
# Timestamps are UTC text with milliseconds: they sort as text and julianday() reads them.
NOW_SQL = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
_SQLITE_HEADER = b"SQLite format 3\x00"

# Columns update_job() must never touch: the id, and the status (it moves only through the
# conditional transitions below, so two racing endings cannot overwrite each other).
_NOT_UPDATABLE = frozenset({"id", "status"})


class StoreError(Exception):
    """A store problem with a message meant for the person running the server."""


class CorruptDatabaseError(StoreError):
    """The file is not a readable SQLite database; nothing was written to it."""


class MigrationError(StoreError):
    """An upgrade failed and was rolled back; the database is as it was before."""

    def __init__(self, message: str, backup_path: Path | None) -> None:
        super().__init__(message)
        self.backup_path = backup_path


class NewerSchemaError(StoreError):
    """The database was written by a newer version of transcriptor."""


def utc_now_text() -> str:
    """Now in the store's timestamp format (UTC, milliseconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# --------------------------------------------------------------------------------------------
# Opening: check, back up, migrate. Synchronous, run in a thread before the async connections.


def schema_statements() -> list[str]:
    """schema.sql split into statements (executescript would COMMIT our transaction)."""
    statements: list[str] = []
    buf = ""
    for line in SCHEMA_PATH.read_text(encoding="utf-8").splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    return statements


def _check_header(path: Path) -> None:
    if not path.exists():
        return
    if path.is_dir():
        raise StoreError(f"database path {path} is a directory")
    size = path.stat().st_size
    if size == 0:
        return  # SQLite treats an empty file as an empty database
    with path.open("rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_HEADER):
        raise CorruptDatabaseError(
            f"{path} is not a SQLite database (bad header); it was left untouched. "
            "Restore it from a backup (files named *.backup-*) or move it away to start fresh."
        )


def _connect_sync(path: Path | str, *, uri: bool = False) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, uri=uri)


def _integrity_errors(conn: sqlite3.Connection, pragma: str = "quick_check") -> list[str]:
    rows = conn.execute(f"PRAGMA {pragma}").fetchall()
    return [str(r[0]) for r in rows if r[0] != "ok"]


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {r[0] for r in rows}


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    """(name, declared type) of each column of table."""
    return [(r[1], r[2] or "") for r in conn.execute(f'PRAGMA table_info("{table}")')]


def backup_to(source: Path, dest: Path) -> None:
    """Write a consistent, integrity-checked copy of the database at source to dest.

    VACUUM INTO reads one snapshot, so writers elsewhere do not tear the copy. The copy is
    made under a temporary name and renamed into place only once it checks out.
    """
    dest = Path(dest)
    tmp = dest.with_name(f"{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    conn = _connect_sync(source)
    try:
        conn.execute("VACUUM INTO ?", (str(tmp),))
    finally:
        conn.close()
    try:
        check = _connect_sync(f"file:{tmp}?mode=ro", uri=True)
        try:
            errors = _integrity_errors(check, "integrity_check")
        finally:
            check.close()
        if errors:
            raise StoreError(f"backup {dest} failed its integrity check: {errors[:3]}")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def _backup_path(path: Path, version: int) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}.backup-v{version}-{stamp}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.backup-v{version}-{stamp}-{n}")
        n += 1
    return candidate


def _ensure_meta(conn: sqlite3.Connection, now: str) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO meta (id, install_id, created_at) VALUES (1, ?, ?)",
        (uuid.uuid4().hex, now),
    )


def _create_fresh(conn: sqlite3.Connection, now: str) -> None:
    for statement in schema_statements():
        conn.execute(statement)
    _ensure_meta(conn, now)


# The older tool's columns and what each became.
_LEGACY_KNOWN = frozenset(
    {
        "id", "filename", "original_path", "duration_minutes", "model", "processes",
        "workers", "status", "progress", "output_path", "error_message", "created_at",
        "completed_at",
    }
)  # fmt: skip
ORPHANED_BY_UPGRADE = (
    "orphaned: was processing when this database was upgraded from the older tool, "
    "which did not track processes; nothing was signalled"
)


def _migrate_v0(conn: sqlite3.Connection, now: str) -> None:
    """The older tool's transcription_jobs (no process tracking) -> schema version 1.

    Meanings carry over: minutes become seconds, workers become threads, pending becomes
    queued, a row left processing is settled as an orphan (failed, `orphaned:`), progress
    given as 0-100 becomes 0-1. Columns this version does not know are kept as they are.
    """
    old_cols = _columns(conn, JOBS_TABLE)
    names = {name for name, _ in old_cols}
    if "id" not in names or "status" not in names:
        raise StoreError(f"table {JOBS_TABLE} has no id/status column; not a transcriptor database")
    old_seq_row = None
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
        old_seq_row = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (JOBS_TABLE,)
        ).fetchone()

    conn.execute(f"ALTER TABLE {JOBS_TABLE} RENAME TO {JOBS_TABLE}_v0")
    for statement in schema_statements():
        conn.execute(statement)
    new_names = {name for name, _ in _columns(conn, JOBS_TABLE)}
    extras = [(n, t) for n, t in old_cols if n not in _LEGACY_KNOWN and n not in new_names]
    for name, decl in extras:
        conn.execute(f'ALTER TABLE {JOBS_TABLE} ADD COLUMN "{name}" {decl}')

    def col(name: str, default: str = "NULL") -> str:
        return f'"{name}"' if name in names else default

    def ts(name: str) -> str:
        # Normalise parsable times to the store's format; keep anything else verbatim.
        c = col(name)
        return f"COALESCE(strftime('%Y-%m-%d %H:%M:%f', {c}), {c})"

    status = col("status")
    progress = f"CAST({col('progress', '0')} AS REAL)"
    targets = {
        "id": "id",
        "filename": f"COALESCE({col('filename')}, '')",
        "original_path": f"COALESCE({col('original_path')}, '')",
        "duration_seconds": f"CAST({col('duration_minutes')} AS REAL) * 60.0",
        "model": f"COALESCE({col('model')}, 'unknown')",
        "processes": f"COALESCE({col('processes')}, 1)",
        "threads": f"COALESCE({col('workers')}, 1)",
        "status": f"""CASE {status}
            WHEN 'pending' THEN 'queued' WHEN 'queued' THEN 'queued'
            WHEN 'completed' THEN 'completed' WHEN 'failed' THEN 'failed'
            WHEN 'cancelled' THEN 'cancelled' WHEN 'canceled' THEN 'cancelled'
            ELSE 'failed' END""",
        "progress": f"""CASE WHEN {progress} IS NULL OR {progress} < 0 THEN 0
            WHEN {progress} > 1 THEN MIN({progress}, 100.0) / 100.0
            ELSE {progress} END""",
        "output_path": col("output_path"),
        "error_message": f"""CASE
            WHEN {status} IN ('processing', 'running') THEN :orphaned
                || COALESCE('; earlier error: ' || {col("error_message")}, '')
            WHEN {status} IN ('pending', 'queued', 'completed', 'failed', 'cancelled', 'canceled')
                THEN {col("error_message")}
            ELSE 'legacy status ' || quote({status}) || ' not recognised; settled as failed'
                || COALESCE('; earlier error: ' || {col("error_message")}, '')
            END""",
        "created_at": f"COALESCE({ts('created_at')}, :now)",
        "finished_at": f"""CASE WHEN {status} IN ('pending', 'queued') THEN NULL
            ELSE COALESCE({ts("completed_at")}, CASE
                WHEN {status} IN ('completed', 'failed', 'cancelled', 'canceled') THEN NULL
                ELSE :now END) END""",
    }
    for name, _ in extras:
        targets[name] = f'"{name}"'
    insert_cols = ", ".join(f'"{n}"' for n in targets)
    select_exprs = ",\n".join(targets.values())
    conn.execute(
        f"INSERT INTO {JOBS_TABLE} ({insert_cols}) SELECT {select_exprs} FROM {JOBS_TABLE}_v0",
        {"now": now, "orphaned": ORPHANED_BY_UPGRADE},
    )
    # Keep AUTOINCREMENT's promise: ids of rows the old tool deleted are never reused.
    if old_seq_row is not None:
        old_seq = int(old_seq_row[0])
        conn.execute(f"DELETE FROM sqlite_sequence WHERE name = '{JOBS_TABLE}_v0'")
        row = conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (JOBS_TABLE,)
        ).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (JOBS_TABLE, old_seq)
            )
        elif int(row[0]) < old_seq:
            conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (old_seq, JOBS_TABLE))
    conn.execute(f"DROP TABLE {JOBS_TABLE}_v0")
    _ensure_meta(conn, now)


# version found -> the step that brings it to version + 1. A plain table, not state: tests
# swap a step out in a child process to kill a migration midway.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection, str], None]] = {0: _migrate_v0}


def _prepare(path: Path) -> None:
    """Make the file at path a current, healthy database, or raise StoreError untouched."""
    _check_header(path)
    conn = _connect_sync(path)
    try:
        try:
            errors = _integrity_errors(conn)
        except sqlite3.DatabaseError as e:
            raise CorruptDatabaseError(
                f"{path} cannot be read as a SQLite database ({e}); it was left untouched. "
                "Restore it from a backup (files named *.backup-*) or move it away."
            ) from e
        if errors:
            raise CorruptDatabaseError(
                f"{path} failed its integrity check ({'; '.join(errors[:3])}); "
                "it was left untouched. Restore it from a backup (files named *.backup-*)."
            )
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise NewerSchemaError(
                f"{path} has schema version {version}, newer than this transcriptor "
                f"understands ({SCHEMA_VERSION}); upgrade transcriptor or use another database"
            )
        if version < SCHEMA_VERSION:
            tables = _tables(conn)
            if version == 0 and not tables:
                _in_transaction(conn, lambda: _create_if_empty(conn))
            else:
                if version == 0 and JOBS_TABLE not in tables:
                    raise StoreError(
                        f"{path} is a SQLite database but not a transcriptor one "
                        f"(tables: {', '.join(sorted(tables))}); it was left untouched"
                    )
                _migrate(conn, path, version)
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


def _in_transaction(conn: sqlite3.Connection, body: Callable[[], None]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        body()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _create_if_empty(conn: sqlite3.Connection) -> None:
    # Re-checked under the write lock: another process may have created it meanwhile.
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) == 0 and not _tables(conn):
        _create_fresh(conn, utc_now_text())
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _remove_stale_backup_temps(path: Path, quiet_seconds: float = 60.0) -> None:
    """Delete half-written backups a killed migration left; one still being written by
    another process changes every moment, so only files quiet for a while go."""
    for tmp in path.parent.glob(f"{path.name}.backup-*.tmp-*"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > quiet_seconds:
                tmp.unlink()


def _migrate(conn: sqlite3.Connection, path: Path, version: int) -> None:
    _remove_stale_backup_temps(path)
    backup = _backup_path(path, version)
    try:
        backup_to(path, backup)
    except (sqlite3.Error, OSError, StoreError) as e:
        raise MigrationError(
            f"could not back up {path} to {backup} before upgrading it ({e}); nothing was changed",
            None,
        ) from e
    try:
        conn.execute("BEGIN IMMEDIATE")
        # Another process may have upgraded it between our look and the lock.
        current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        now = utc_now_text()
        while current < SCHEMA_VERSION:
            MIGRATIONS[current](conn, now)
            current += 1
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if not isinstance(e, Exception):
            raise
        raise MigrationError(
            f"upgrading {path} from schema version {version} to {SCHEMA_VERSION} failed "
            f"({type(e).__name__}: {e}); it was rolled back, so the database is as it was. "
            f"A backup taken just before is at {backup}",
            backup,
        ) from e


# --------------------------------------------------------------------------------------------
# The async store.


def _in_list(statuses: Iterable[str]) -> tuple[str, list[str]]:
    values = [JobStatus(s).value for s in statuses]
    return ", ".join("?" for _ in values), values


class Store:
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
            await asyncio.to_thread(_prepare, path)
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
        task.add_done_callback(self._write_done)
        return await asyncio.shield(task)

    def _write_done(self, task: asyncio.Future[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so a caller that left does not cause a warning

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
    ) -> dict[str, Any]:
        """A new queued job (progress 0, created_at now); returns its row."""
        if on_disconnect not in ("cancel", "keep"):
            raise ValueError(f"on_disconnect must be 'cancel' or 'keep', not {on_disconnect!r}")
        if processes < 1 or threads < 1:
            raise ValueError("processes and threads must be at least 1")
        params = (
            filename, original_path, duration_seconds, model, language, processes, threads,
            chunk_seconds, overlap_seconds, on_disconnect, output_path,
        )  # fmt: skip

        async def body(db: aiosqlite.Connection) -> dict[str, Any]:
            cursor = await db.execute(
                f"""INSERT INTO {JOBS_TABLE} (filename, original_path, duration_seconds, model,
                    language, processes, threads, chunk_seconds, overlap_seconds, on_disconnect,
                    output_path, status, progress, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, {NOW_SQL})""",
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
            f"SELECT * FROM {JOBS_TABLE} WHERE status = 'queued' ORDER BY id"
        )

    async def update_job(self, job_id: int, **fields: Any) -> None:
        """Plain column updates (log_file_path, output_path, ...); never id or status."""
        if not fields:
            return
        bad = [f for f in fields if f in _NOT_UPDATABLE or f not in self._job_columns]
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
        instance_id: str,
        log_file_path: str,
    ) -> bool:
        """queued -> running with the process that runs it; False if not allowed now."""
        return await self._transition(
            job_id,
            JobStatus.RUNNING,
            {
                "process_id": pid,
                "process_group_id": pgid,
                "process_start_ticks": start_ticks,
                "process_boot_id": boot_id,
                "instance_id": instance_id,
                "log_file_path": log_file_path,
            },
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
                "WHERE id = ? AND status = 'running'",
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
            "WHERE id = ? AND status IN ('queued', 'running')",
            (value, job_id),
        )

    async def get_active_jobs(self) -> list[dict[str, Any]]:
        return await self._fetchall(
            f"SELECT * FROM {JOBS_TABLE} WHERE status = 'running' ORDER BY id"
        )

    async def get_orphaned_jobs(self, timeout_seconds: float) -> list[dict[str, Any]]:
        """Running jobs whose heartbeat is older than timeout_seconds, or missing."""
        if not math.isfinite(timeout_seconds) or timeout_seconds < 0:
            raise ValueError(f"timeout_seconds must be >= 0, not {timeout_seconds!r}")
        # julianday() compares instants whether or not a time carries fractional seconds.
        return await self._fetchall(
            f"""SELECT * FROM {JOBS_TABLE} WHERE status = 'running' AND (
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

    async def cancel_job(self, job_id: int, reason: str, *, exit_code: int | None = None) -> bool:
        """queued|running -> cancelled; False, changing nothing, if the job already ended."""
        return await self._transition(
            job_id,
            JobStatus.CANCELLED,
            {"cancel_reason": reason, "exit_code": exit_code},
            now_columns=("finished_at",),
        )

    # -- metrics ---------------------------------------------------------------------------

    async def record_metrics(
        self, job_id: int, *, cpu_percent: float, memory_mb: float, num_processes: int
    ) -> None:
        await self.record_metrics_many([(job_id, cpu_percent, memory_mb, num_processes)])

    async def record_metrics_many(self, samples: Iterable[tuple[int, float, float, int]]) -> None:
        """(job_id, cpu_percent, memory_mb, num_processes) samples, in one transaction."""
        rows = [tuple(s) for s in samples]
        if not rows:
            return

        async def body(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "INSERT INTO job_metrics (job_id, time, cpu_percent, memory_mb, num_processes)"
                f" VALUES (?, {NOW_SQL}, ?, ?, ?)",
                rows,
            )

        await self._write(body)

    async def get_metrics(self, job_id: int, *, limit: int = 600) -> list[dict[str, Any]]:
        """The job's last `limit` samples, oldest first."""
        return await self._fetchall(
            """SELECT job_id, time, cpu_percent, memory_mb, num_processes FROM (
                   SELECT * FROM job_metrics WHERE job_id = ? ORDER BY id DESC LIMIT ?
               ) ORDER BY id""",
            (job_id, limit),
        )


__all__ = [
    "CorruptDatabaseError",
    "MigrationError",
    "NewerSchemaError",
    "Store",
    "StoreError",
    "backup_to",
    "utc_now_text",
]
