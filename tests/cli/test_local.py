"""`transcriptor cleanup` and `transcriptor db`, on a real SQLite file with no server."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.procs.identity import boot_id, read_identity
from server.store import Store
from server.store.migrate import SCHEMA_VERSION
from tests.helpers.cli_proc import cli
from tests.helpers.procs import is_alive
from tests.helpers.waiting import wait_for

LONG_AGO = "2000-01-01 00:00:00.000"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process of our own, in its own group; killed (by us) after the test."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=5)


def running_job(
    data_dir: Path,
    *,
    pid: int,
    start_ticks: int,
    heartbeat: str | None = LONG_AGO,
    server_alive: bool = False,
) -> int:
    """A `running` row as a server would leave it; its server is this test process, with
    wrong start ticks unless server_alive (so it reads as dead)."""

    async def create() -> int:
        store = await Store.open(data_dir / "transcriptor.db")
        try:
            me = read_identity(os.getpid())
            assert me is not None
            ticks = me.start_ticks if server_alive else me.start_ticks + 7
            instance = await store.register_instance(pid=me.pid, start_ticks=ticks, boot_id=me.boot_id)
            job = await store.create_job(
                filename="talk.mp3", original_path="/nowhere/talk.mp3", duration_seconds=60.0,
                model="tiny.en", language="en", processes=1, threads=1, chunk_seconds=0.0,
                overlap_seconds=2.0, on_disconnect="keep",
            )  # fmt: skip
            assert await store.register_process(
                job["id"], pid=pid, pgid=pid, start_ticks=start_ticks, boot_id=boot_id(),
                instance_id=instance, log_file_path="/nowhere/job.log",
            )  # fmt: skip
            return int(job["id"])
        finally:
            await store.close()

    job_id = asyncio.run(create())
    if heartbeat != "now":
        with sqlite3.connect(data_dir / "transcriptor.db") as conn:
            conn.execute("UPDATE transcription_jobs SET last_heartbeat = ? WHERE id = ?", (heartbeat, job_id))
        conn.close()
    return job_id


def row(data_dir: Path, job_id: int) -> dict[str, object]:
    conn = sqlite3.connect(data_dir / "transcriptor.db")
    conn.row_factory = sqlite3.Row
    try:
        found = conn.execute("SELECT * FROM transcription_jobs WHERE id = ?", (job_id,)).fetchone()
        return dict(found)
    finally:
        conn.close()


def ticks(pid: int) -> int:
    identity = read_identity(pid)
    assert identity is not None
    return identity.start_ticks


def test_cleanup_never_signals_a_process_that_is_not_provably_the_jobs(
    data_dir: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    job_id = running_job(data_dir, pid=sleeper.pid, start_ticks=ticks(sleeper.pid) + 1)

    dry = cli("cleanup", "--dry-run", "--data-dir", str(data_dir))
    assert dry.returncode == 0, dry.stderr
    assert f"job {job_id} (pid {sleeper.pid}): would signal nothing" in dry.stdout
    assert f"pid {sleeper.pid} now belongs to another process; not signalled" in dry.stdout
    assert "dry run: 1 job(s) would be settled; nothing was signalled or changed" in dry.stdout
    assert is_alive(sleeper.pid)
    assert row(data_dir, job_id)["status"] == "running"

    real = cli("cleanup", "--data-dir", str(data_dir))
    assert real.returncode == 0, real.stderr
    assert f"job {job_id} (pid {sleeper.pid}): signalled nothing; marked failed:" in real.stdout
    after = row(data_dir, job_id)
    assert after["status"] == "failed"
    assert str(after["error_message"]).startswith("orphaned:")
    assert is_alive(sleeper.pid)  # not ours to kill: the test kills it, it started it


def test_cleanup_kills_a_verified_orphan(data_dir: Path, sleeper: subprocess.Popen[bytes]) -> None:
    job_id = running_job(data_dir, pid=sleeper.pid, start_ticks=ticks(sleeper.pid))

    dry = cli("cleanup", "--dry-run", "--data-dir", str(data_dir))
    assert f"job {job_id} (pid {sleeper.pid}): would kill its processes" in dry.stdout
    assert is_alive(sleeper.pid) and row(data_dir, job_id)["status"] == "running"

    real = cli("cleanup", "--kill-grace", "1", "--data-dir", str(data_dir))
    assert real.returncode == 0, real.stderr
    assert f"job {job_id} (pid {sleeper.pid}): killed its processes; marked failed:" in real.stdout
    assert wait_for(lambda: not is_alive(sleeper.pid), 5, "the orphan to be gone")
    after = row(data_dir, job_id)
    assert after["status"] == "failed"
    assert str(after["error_message"]).startswith("orphaned: server instance")


def test_cleanup_leaves_a_live_servers_jobs_alone(data_dir: Path, sleeper: subprocess.Popen[bytes]) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    fresh = running_job(data_dir, pid=sleeper.pid, start_ticks=ticks(sleeper.pid),
                        heartbeat="now", server_alive=True)  # fmt: skip
    # Its process just exited, but its live server is about to record that itself.
    ending = running_job(data_dir, pid=int(gone.stdout), start_ticks=1,
                         heartbeat="now", server_alive=True)  # fmt: skip
    result = cli("cleanup", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("no orphaned jobs")
    assert row(data_dir, fresh)["status"] == row(data_dir, ending)["status"] == "running"
    assert is_alive(sleeper.pid)

    stale = cli("cleanup", "--timeout", "0", "--dry-run", "--data-dir", str(data_dir))
    assert f"job {fresh} (pid {sleeper.pid}): would kill" in stale.stdout
    assert f"job {ending} (pid {int(gone.stdout)}): would signal nothing" in stale.stdout


def test_cleanup_needs_an_existing_current_database(data_dir: Path) -> None:
    missing = cli("cleanup", "--data-dir", str(data_dir))
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"error: no database at {data_dir / 'transcriptor.db'}")
    assert not data_dir.exists()
    legacy_database(data_dir)
    legacy = cli("cleanup", "--data-dir", str(data_dir))
    assert legacy.returncode == 1
    assert "transcriptor db migrate" in legacy.stderr


def test_db_backup_writes_a_valid_copy(data_dir: Path, tmp_path: Path) -> None:
    running_job(data_dir, pid=os.getpid(), start_ticks=ticks(os.getpid()))
    dest = tmp_path / "copy.db"
    result = cli("db", "backup", str(dest), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backed up {data_dir / 'transcriptor.db'} to {dest} (")
    assert f"schema version {SCHEMA_VERSION}, 1 job(s)); integrity check ok" in result.stdout
    assert dest.read_bytes().startswith(b"SQLite format 3\x00")
    conn = sqlite3.connect(f"file:{dest}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT filename FROM transcription_jobs").fetchall() == [("talk.mp3",)]
    finally:
        conn.close()

    again = cli("db", "backup", str(dest), "--data-dir", str(data_dir))
    assert again.returncode == 1 and "--force" in again.stderr
    assert cli("db", "backup", str(dest), "--force", "--data-dir", str(data_dir)).returncode == 0
    into = cli("db", "backup", str(tmp_path), "--data-dir", str(data_dir))
    assert into.returncode == 0, into.stderr
    assert len(list(tmp_path.glob("transcriptor.db.backup-*"))) == 1


def legacy_database(data_dir: Path) -> Path:
    """The older tool's database: no process tracking, minutes, 0-100 progress."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "transcriptor.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE transcription_jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT, filename TEXT, original_path TEXT,
            duration_minutes REAL, model TEXT, processes INTEGER, workers INTEGER,
            status TEXT, progress REAL, output_path TEXT, error_message TEXT,
            created_at TEXT, completed_at TEXT);
        INSERT INTO transcription_jobs (filename, original_path, duration_minutes, model,
            processes, workers, status, progress, created_at, completed_at) VALUES
            ('a.mp3', '/old/a.mp3', 1.5, 'base', 1, 4, 'completed', 100,
             '2024-01-01 10:00:00', '2024-01-01 10:05:00'),
            ('b.mp3', '/old/b.mp3', 2.0, 'base', 2, 2, 'processing', 40,
             '2024-01-02 10:00:00', NULL),
            ('c.mp3', '/old/c.mp3', 0.5, 'tiny', 1, 1, 'pending', 0,
             '2024-01-03 10:00:00', NULL);
        """
    )
    conn.commit()
    conn.close()
    return path


def test_db_migrate_upgrades_a_legacy_database_after_a_backup(data_dir: Path) -> None:
    path = legacy_database(data_dir)
    result = cli("db", "migrate", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: schema version 0 -> {SCHEMA_VERSION}"
    assert lines[1].startswith(f"backup of version 0: {path}.backup-v0-")
    assert lines[2].startswith("jobs: 3 (1 left processing by the older tool: now failed")
    backup = Path(lines[1].split(": ", 1)[1])
    conn = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        assert conn.execute("SELECT status FROM transcription_jobs ORDER BY id").fetchall() == [
            ("completed",),
            ("processing",),
            ("pending",),
        ]
    finally:
        conn.close()
    statuses = [(row(data_dir, i)["status"], row(data_dir, i)["progress"]) for i in (1, 2, 3)]
    assert statuses == [("completed", 1.0), ("failed", 0.4), ("queued", 0.0)]
    assert str(row(data_dir, 2)["error_message"]).startswith("orphaned:")

    again = cli("db", "migrate", "--data-dir", str(data_dir))
    assert again.returncode == 0
    assert again.stdout == f"{path}: schema version {SCHEMA_VERSION}, already current; nothing to do\n"


def test_db_commands_refuse_what_is_not_a_database(data_dir: Path, tmp_path: Path) -> None:
    data_dir.mkdir()
    (data_dir / "transcriptor.db").write_bytes(b"not a database at all, " * 20)
    for args in (["db", "migrate"], ["db", "backup", str(tmp_path / "x.db")], ["cleanup"]):
        result = cli(*args, "--data-dir", str(data_dir))
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert (data_dir / "transcriptor.db").read_bytes() == b"not a database at all, " * 20
