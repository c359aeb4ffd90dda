"""Upgrading older databases in place, with a backup first; refusing broken files untouched."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from server.store import CorruptDatabaseError, MigrationError, NewerSchemaError, Store, StoreError
from server.store import migrate as store_module
from server.store.migrate import SCHEMA_VERSION
from tests.helpers.legacy_db import LEGACY_ROWS, legacy_rows, make_legacy_db, roll_back
from tests.helpers.store_rows import job_args

REPO = Path(__file__).resolve().parents[2]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.backup-v0-*"))


async def test_legacy_database_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "transcriptor.db"
    make_legacy_db(path, deleted_tail=3)
    old = legacy_rows(path)

    store = await Store.open(path)
    try:
        jobs = {j["filename"]: j for j in await store.list_jobs()}
        assert set(jobs) == {r[0] for r in LEGACY_ROWS}
        assert [j["id"] for j in await store.list_jobs()] == [4, 3, 2, 1]

        a, b, c, d = jobs["a.mp3"], jobs["b.wav"], jobs["c.m4a"], jobs["d.ogg"]
        assert (a["status"], a["progress"], a["duration_seconds"], a["threads"]) == (
            "completed", 1.0, 150.0, 4,
        )  # fmt: skip
        assert a["finished_at"] == "2024-03-01 10:05:00.000"
        assert a["created_at"] == "2024-03-01 10:00:00.000"
        assert (a["model"], a["processes"], a["output_path"]) == ("base", 2, "/out/a.mp3")
        assert a["original_path"] == "/uploads/a.mp3"
        assert a["notes"] == "first"  # a column this version does not use is kept

        assert (b["status"], b["threads"], b["duration_seconds"]) == ("queued", 2, 60.0)
        assert b["finished_at"] is None and b["error_message"] is None

        assert c["status"] == "failed"
        assert c["error_message"].startswith("orphaned:")
        assert c["progress"] == pytest.approx(0.42)
        assert c["finished_at"] is not None
        assert c["notes"] == "was running"

        assert (d["status"], d["error_message"], d["progress"]) == ("failed", "model crashed", 0.3)

        # New columns exist and work; ids deleted by the old tool are not reused.
        new = await store.create_job(**job_args())
        assert new["id"] == 8
        assert new["on_disconnect"] == "cancel" and new["process_start_ticks"] is None
        assert await store.queued_jobs() == [await store.get_job(2), new]
    finally:
        await store.close()

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    [backup] = backups(path)
    assert legacy_rows(backup) == old
    check = sqlite3.connect(backup)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert check.execute("PRAGMA user_version").fetchone()[0] == 0
    finally:
        check.close()

    # Opening again neither migrates nor backs up again.
    again = await Store.open(path)
    await again.close()
    assert len(backups(path)) == 1


async def test_failed_migration_leaves_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "transcriptor.db"
    make_legacy_db(path)
    before = digest(path)
    original = store_module.MIGRATIONS[0]

    def broken(conn: sqlite3.Connection, now: str) -> None:
        original(conn, now)
        raise RuntimeError("simulated failure after the work")

    monkeypatch.setitem(store_module.MIGRATIONS, 0, broken)
    with pytest.raises(MigrationError) as info:
        await Store.open(path)
    [backup] = backups(path)
    message = str(info.value)
    assert str(backup) in message and "rolled back" in message
    assert info.value.backup_path == backup
    assert digest(path) == before
    assert legacy_rows(backup) == legacy_rows(path)

    monkeypatch.setitem(store_module.MIGRATIONS, 0, original)
    store = await Store.open(path)
    try:
        assert len(await store.list_jobs()) == len(LEGACY_ROWS)
    finally:
        await store.close()


SLOW_MIGRATION = """
import asyncio, sys, time
from server.store import Store
from server.store import migrate as store
original = store.MIGRATIONS[0]
def slow(conn, now):
    original(conn, now)
    print("inside the migration", flush=True)
    time.sleep(60)
store.MIGRATIONS[0] = slow
asyncio.run(Store.open(sys.argv[1]))
"""


async def test_migration_killed_midway_leaves_original_usable(tmp_path: Path) -> None:
    path = tmp_path / "transcriptor.db"
    make_legacy_db(path)
    old = legacy_rows(path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SLOW_MIGRATION, str(path),
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line == b"inside the migration\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # The interrupted transaction is rolled back by the next reader: old rows, old shape.
    assert legacy_rows(path) == old
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
        cols = {r[1] for r in conn.execute("PRAGMA table_info(transcription_jobs)")}
        assert "duration_minutes" in cols and "process_start_ticks" not in cols
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    [backup] = backups(path)
    assert legacy_rows(backup) == old

    store = await Store.open(path)
    try:
        assert len(await store.list_jobs()) == len(LEGACY_ROWS)
    finally:
        await store.close()


async def test_random_bytes_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "transcriptor.db"
    path.write_bytes(os.urandom(8192))
    before = digest(path)
    with pytest.raises(CorruptDatabaseError, match="not a SQLite database"):
        await Store.open(path)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transcriptor.db"]


async def test_truncated_database_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "transcriptor.db"
    store = await Store.open(path)
    try:
        await store.record_metrics_many([])
        for _ in range(200):
            job = await store.create_job(**job_args(filename="x" * 500))
            await store.record_metrics(job["id"], cpu_percent=1, memory_mb=1, num_processes=1)
    finally:
        await store.close()
    data = path.read_bytes()
    assert len(data) > 8 * 4096
    path.write_bytes(data[: len(data) // 2])
    before = digest(path)
    with pytest.raises(CorruptDatabaseError) as info:
        await Store.open(path)
    assert "left untouched" in str(info.value)
    assert digest(path) == before


async def test_garbage_pages_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "transcriptor.db"
    store = await Store.open(path)
    try:
        for _ in range(100):
            await store.create_job(**job_args(filename="y" * 500))
    finally:
        await store.close()
    data = bytearray(path.read_bytes())
    data[4096:] = os.urandom(len(data) - 4096)  # keep page 1, scramble the rest
    path.write_bytes(bytes(data))
    before = digest(path)
    with pytest.raises(CorruptDatabaseError):
        await Store.open(path)
    assert digest(path) == before


async def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "transcriptor.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE transcription_jobs (id INTEGER PRIMARY KEY)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(NewerSchemaError, match="newer"):
        await Store.open(path)


async def test_foreign_database_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE recipes (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="not a transcriptor"):
        await Store.open(path)
    assert digest(path) == before


async def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        await Store.open(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises((StoreError, OSError)):
        await Store.open(blocker / "sub" / "t.db")


async def test_stale_backup_temp_of_a_killed_migration_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "transcriptor.db"
    make_legacy_db(path)
    stale = tmp_path / "transcriptor.db.backup-v0-20260101T000000Z.tmp-deadbeef"
    fresh = tmp_path / "transcriptor.db.backup-v0-20260101T000001Z.tmp-cafebabe"
    stale.write_bytes(b"half a backup")
    fresh.write_bytes(b"another process is writing this one")
    os.utime(stale, (0, os.stat(stale).st_mtime - 3600))
    store = await Store.open(path)
    await store.close()
    assert not stale.exists()
    assert fresh.exists()  # changed within the last minute: maybe still being written
    assert [b for b in backups(path) if ".tmp-" not in b.name] != []


async def test_v1_database_gains_source_and_pipeline_options(tmp_path: Path) -> None:
    from server.store import Store

    path = tmp_path / "v1.db"
    store = await Store.open(path)
    await store.close()
    # Back to version 1: the same table without the two columns version 2 added.
    roll_back(path, 1, columns=("source", "pipeline_options"))
    store = await Store.open(path)
    try:
        old = (await store.list_jobs())[0]
        assert old["filename"] == "old.wav" and old["source"] is None
        new = await store.create_job(
            filename="a.wav", original_path="/x/a.wav", duration_seconds=1.0, model="tiny.en",
            language="auto", processes=1, threads=1, chunk_seconds=0, overlap_seconds=3,
            source="api: openai", pipeline_options='{"temperature": 0.0}',
        )  # fmt: skip
        assert (new["source"], new["pipeline_options"]) == ("api: openai", '{"temperature": 0.0}')
    finally:
        await store.close()
    assert list(tmp_path.glob("v1.db.backup-v1-*"))
