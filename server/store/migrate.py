"""Opening the database file: header and integrity checks, the schema, backups, and
migrations with a backup first. Synchronous; the Store runs it in a thread."""

from __future__ import annotations

import contextlib
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from server.store import migrate_speakers
from server.store.schema import JOBS_TABLE, columns, schema_statements, tables
from server.store.upgrades import migrate_v1, migrate_v2, migrate_v3

T = TypeVar("T")

SCHEMA_VERSION = 5
# Long enough that 50 concurrent writers plus a CLI in another process never see
# "database is locked"; each write transaction holds the lock for well under a millisecond.
BUSY_TIMEOUT_SECONDS = 30.0
# Timestamps are UTC text with milliseconds: they sort as text and julianday() reads them.
NOW_SQL = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
_SQLITE_HEADER = b"SQLite format 3\x00"

# Columns update_job() must never touch: the id, and the status (it moves only through the
# conditional transitions below, so two racing endings cannot overwrite each other).
NOT_UPDATABLE = frozenset({"id", "status"})


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
    old_cols = columns(conn, JOBS_TABLE)
    names = {name for name, _ in old_cols}
    if "id" not in names or "status" not in names:
        raise StoreError(f"table {JOBS_TABLE} has no id/status column; not a transcriptor database")
    old_seq = _sequence(conn, JOBS_TABLE)

    conn.execute(f"ALTER TABLE {JOBS_TABLE} RENAME TO {JOBS_TABLE}_v0")
    for statement in schema_statements():
        conn.execute(statement)
    new_names = {name for name, _ in columns(conn, JOBS_TABLE)}
    extras = [(n, t) for n, t in old_cols if n not in _LEGACY_KNOWN and n not in new_names]
    for name, decl in extras:
        conn.execute(f'ALTER TABLE {JOBS_TABLE} ADD COLUMN "{name}" {decl}')

    targets = _legacy_targets(names)
    for name, _ in extras:
        targets[name] = f'"{name}"'
    insert_cols = ", ".join(f'"{n}"' for n in targets)
    select_exprs = ",\n".join(targets.values())
    conn.execute(
        f"INSERT INTO {JOBS_TABLE} ({insert_cols}) SELECT {select_exprs} FROM {JOBS_TABLE}_v0",
        {"now": now, "orphaned": ORPHANED_BY_UPGRADE},
    )
    if old_seq is not None:
        _carry_sequence(conn, old_seq)
    conn.execute(f"DROP TABLE {JOBS_TABLE}_v0")
    _ensure_meta(conn, now)


def _sequence(conn: sqlite3.Connection, table: str) -> int | None:
    """AUTOINCREMENT's high-water mark for table, or None if it has none yet."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
        return None
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return None if row is None else int(row[0])


def _carry_sequence(conn: sqlite3.Connection, old_seq: int) -> None:
    # Keep AUTOINCREMENT's promise: ids of rows the old tool deleted are never reused.
    conn.execute(f"DELETE FROM sqlite_sequence WHERE name = '{JOBS_TABLE}_v0'")
    seq = _sequence(conn, JOBS_TABLE)
    if seq is None:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (JOBS_TABLE, old_seq))
    elif seq < old_seq:
        conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (old_seq, JOBS_TABLE))


def _legacy_targets(names: set[str]) -> dict[str, str]:
    """Each new column -> the SQL expression over the old table's row that fills it
    (`:now` and `:orphaned` are bound by the caller)."""

    def col(name: str, default: str = "NULL") -> str:
        return f'"{name}"' if name in names else default

    def ts(name: str) -> str:
        # Normalise parsable times to the store's format; keep anything else verbatim.
        c = col(name)
        return f"COALESCE(strftime('%Y-%m-%d %H:%M:%f', {c}), {c})"

    status = col("status")
    progress = f"CAST({col('progress', '0')} AS REAL)"
    return {
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


# version found -> the step that brings it to version + 1. A plain table, not state: tests
# swap a step out in a child process to kill a migration midway.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection, str], None]] = {
    0: _migrate_v0,
    1: migrate_v1,
    2: migrate_v2,
    3: migrate_v3,
    4: migrate_speakers.migrate_v4,
}


def prepare(path: Path) -> None:
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
            found = tables(conn)
            if version == 0 and not found:
                _in_transaction(conn, lambda: _create_if_empty(conn))
            else:
                if version == 0 and JOBS_TABLE not in found:
                    raise StoreError(
                        f"{path} is a SQLite database but not a transcriptor one "
                        f"(tables: {', '.join(sorted(found))}); it was left untouched"
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
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) == 0 and not tables(conn):
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
