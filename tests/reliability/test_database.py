"""The database under a real server: concurrent writers, and a migration killed midway."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from server.store.migrate import SCHEMA_VERSION
from tests.helpers.forms import multipart
from tests.helpers.legacy_db import make_legacy_db
from tests.helpers.server_proc import ServerProcess
from tests.helpers.waiting import wait_for

CONCURRENT = 50


async def test_fifty_concurrent_uploads_while_heartbeats_write(start_server, tone, record):
    # Heartbeats, metrics and progress every 50 ms, so writes really do collide.
    server = start_server(
        "--heartbeat-interval", "0.05", "--metrics-interval", "0.05", "--max-concurrent-jobs", "2",
        fake=["--lines", "10", "--interval", "0.02"],
    )  # fmt: skip
    warm = await asyncio.to_thread(server.upload, tone, on_disconnect="keep")
    await asyncio.to_thread(server.wait_final, warm["id"])
    data = tone.read_bytes()

    async def one(session: aiohttp.ClientSession, i: int) -> tuple[int, dict]:
        body, content_type = multipart({"on_disconnect": "keep"}, filename=f"c{i}.wav", content=data)
        async with session.post(
            server.url + "/api/jobs", data=body, headers={"Content-Type": content_type}
        ) as response:
            return response.status, await response.json()

    began = time.monotonic()
    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(*(one(session, i) for i in range(CONCURRENT)))
    burst = time.monotonic() - began
    statuses = [status for status, _ in results]
    assert statuses == [201] * CONCURRENT, [r for r in results if r[0] != 201][:3]
    ids = sorted(job["id"] for _, job in results)
    assert len(set(ids)) == CONCURRENT
    names = {job["filename"] for _, job in results}
    assert names == {f"c{i}.wav" for i in range(CONCURRENT)}
    # Every row present, in the file itself, and every job runs to its end.
    with sqlite3.connect(f"file:{server.data_dir / 'transcriptor.db'}?mode=ro", uri=True) as conn:
        stored = [
            r[0] for r in conn.execute("SELECT id FROM transcription_jobs WHERE id != ?", (warm["id"],))
        ]
    assert sorted(stored) == ids
    for job_id in ids:
        assert (await asyncio.to_thread(server.wait_final, job_id, 60))["status"] == "completed"
    output = server.output()
    assert "database is locked" not in output
    assert "Traceback" not in output, output[-3000:]
    with sqlite3.connect(server.data_dir / "transcriptor.db") as conn:
        heartbeats = conn.execute("SELECT count(*) FROM job_metrics").fetchone()[0]
    record(uploads=CONCURRENT, burst_seconds=round(burst, 2), metric_rows=heartbeats)


# -- a migration killed midway ----------------------------------------------------------------

LEGACY_EXTRA_ROWS = 100_000
KILL_DELAYS = [0.0, 0.05, 0.2, 0.5, 1.0]


def big_legacy_db(path: Path) -> None:
    """The older tool's database with many rows, so upgrading it takes a while."""
    make_legacy_db(path)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO transcription_jobs (filename, original_path, duration_minutes, model,"
            " processes, workers, status, progress, output_path, created_at, completed_at)"
            " VALUES (?, ?, 1.5, 'base', 1, 2, ?, 100.0, '/out', '2024-01-01 00:00:00',"
            " '2024-01-01 00:01:00')",
            (
                (f"old-{i}.mp3", f"/uploads/old-{i}.mp3", "completed" if i % 10 else "processing")
                for i in range(LEGACY_EXTRA_ROWS)
            ),
        )


def finished_backup(data: Path) -> Path | None:
    """The backup once renamed into place (its temporary name carries `.tmp-`)."""
    return next((p for p in data.glob("transcriptor.db.backup-v0-*") if ".tmp-" not in p.name), None)


def table_digest(path: Path) -> tuple[int, int, list[tuple]]:
    """(user_version, row count, a sample of rows), opened as any next user would (which
    rolls back a transaction a killed writer left in the journal)."""
    with sqlite3.connect(path) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        count = conn.execute("SELECT count(*) FROM transcription_jobs").fetchone()[0]
        sample = conn.execute("SELECT * FROM transcription_jobs WHERE id % 9973 = 1 ORDER BY id").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return version, count, sample


@pytest.mark.slow
def test_server_killed_during_migration_leaves_original_and_backup_intact(tmp_path, record):
    legacy = tmp_path / "legacy.db"
    big_legacy_db(legacy)
    original = table_digest(legacy)
    assert original[0] == 0
    outcomes = []
    for i, delay in enumerate(KILL_DELAYS):
        data = tmp_path / f"data{i}"
        data.mkdir()
        db = data / "transcriptor.db"
        shutil.copy(legacy, db)
        server = ServerProcess(data, ["--pipeline-command", "/nonexistent/pipeline"])
        server.start(wait=False)
        try:
            backup = wait_for(
                lambda data=data: finished_backup(data),
                30,
                "the pre-migration backup",
                interval=0.005,
            )
            time.sleep(delay)
            journal = (data / "transcriptor.db-journal").exists()
            server.sigkill()
        finally:
            server.stop()  # already dead: checks nothing it started is left
        version, count, sample = table_digest(db)
        if version == 0:
            # Killed inside the upgrade: the next reader rolled it back to the old shape.
            assert (version, count, sample) == original
            outcomes.append(f"{delay:g}s: rolled back to v0" + (" (hot journal)" if journal else ""))
        else:
            assert version == SCHEMA_VERSION and count == original[1], (version, count)
            outcomes.append(f"{delay:g}s: upgrade had committed")
        assert table_digest(backup) == original, "the backup is not the database as it was"
    assert any("rolled back" in o for o in outcomes), outcomes
    # A clean start on a killed copy upgrades it, settles the rows left running, serves them.
    data = tmp_path / "data0"
    server = ServerProcess(data, ["--pipeline-command", "/nonexistent/pipeline"])
    server.start()
    try:
        version, count, _ = table_digest(data / "transcriptor.db")
        assert version == SCHEMA_VERSION and count == original[1]
        jobs = server.jobs()
        assert jobs and all(j["status"] in ("completed", "failed", "queued") for j in jobs)
        with sqlite3.connect(f"file:{data / 'transcriptor.db'}?mode=ro", uri=True) as conn:
            running = conn.execute(
                "SELECT count(*) FROM transcription_jobs WHERE status = 'running'"
            ).fetchone()[0]
            orphaned = conn.execute(
                "SELECT count(*) FROM transcription_jobs WHERE error_message LIKE 'orphaned:%'"
            ).fetchone()[0]
        assert running == 0
        assert orphaned == LEGACY_EXTRA_ROWS // 10 + 1
    finally:
        server.stop()
    record(legacy_rows=original[1], kills=outcomes)
