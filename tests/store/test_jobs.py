"""The job functions against a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from server.jobs.state import ORPHANED_PREFIX, REASON_STOPPED
from server.store import Store
from server.store.migrate import SCHEMA_VERSION
from tests.helpers.store_rows import job_args


async def start(store: Store, job_id: int, **overrides: object) -> bool:
    args: dict[str, object] = {
        "pid": 4242,
        "pgid": 4242,
        "start_ticks": 123,
        "boot_id": "boot",
        "instance_id": "inst",
        "log_file_path": "/tmp/job.log",
    }
    args.update(overrides)
    return await store.register_process(job_id, **args)  # type: ignore[arg-type]


async def test_new_database_has_schema_meta_and_wal(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sub" / "t.db")
    try:
        assert len(store.install_id) == 32
        conn = sqlite3.connect(tmp_path / "sub" / "t.db")
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            assert {"transcription_jobs", "job_metrics", "server_instances", "meta"} <= tables
        finally:
            conn.close()
    finally:
        await store.close()
    # The install id is made once, with the database.
    again = await Store.open(tmp_path / "sub" / "t.db")
    try:
        assert again.install_id == store.install_id
    finally:
        await again.close()


async def test_create_and_get_job(store: Store) -> None:
    job = await store.create_job(**job_args(output_path="/out/1"))
    assert job["status"] == "queued"
    assert job["progress"] == 0.0
    assert job["duration_seconds"] == 12.5
    assert job["on_disconnect"] == "cancel"
    assert job["output_path"] == "/out/1"
    assert len(job["created_at"]) == len("2026-01-01 10:00:00.000")
    assert await store.get_job(job["id"]) == job
    assert await store.get_job(999) is None


async def test_create_job_rejects_bad_on_disconnect(store: Store) -> None:
    with pytest.raises(ValueError, match="on_disconnect"):
        await store.create_job(**job_args(on_disconnect="maybe"))


async def test_list_and_queue_order(store: Store) -> None:
    ids = [(await store.create_job(**job_args(filename=f"{i}.wav")))["id"] for i in range(4)]
    assert [j["id"] for j in await store.list_jobs()] == ids[::-1]
    assert [j["id"] for j in await store.list_jobs(limit=2)] == ids[:1:-1]
    assert [j["id"] for j in await store.queued_jobs()] == ids
    assert await start(store, ids[1])
    assert [j["id"] for j in await store.queued_jobs()] == [ids[0], ids[2], ids[3]]
    assert [j["id"] for j in await store.list_jobs(statuses=["running"])] == [ids[1]]
    assert [j["id"] for j in await store.get_active_jobs()] == [ids[1]]
    assert await store.list_jobs(statuses=[]) == []


async def test_register_process_records_identity(store: Store) -> None:
    job = await store.create_job(**job_args())
    assert await start(store, job["id"])
    row = await store.get_job(job["id"])
    assert row is not None
    assert row["status"] == "running"
    assert (row["process_id"], row["process_group_id"], row["process_start_ticks"]) == (
        4242,
        4242,
        123,
    )
    assert row["process_boot_id"] == "boot"
    assert row["instance_id"] == "inst"
    assert row["log_file_path"] == "/tmp/job.log"
    assert row["started_at"] is not None
    assert row["last_heartbeat"] is not None
    # running -> running is not a transition
    assert not await start(store, job["id"])


async def test_register_process_refused_after_cancel(store: Store) -> None:
    job = await store.create_job(**job_args())
    assert await store.cancel_job(job["id"], REASON_STOPPED)
    assert not await start(store, job["id"])
    row = await store.get_job(job["id"])
    assert row is not None
    assert row["status"] == "cancelled"
    assert row["cancel_reason"] == REASON_STOPPED
    assert row["process_id"] is None


async def test_endings_are_final_and_exclusive(store: Store) -> None:
    job = await store.create_job(**job_args())
    assert not await store.complete_job(job["id"])  # queued cannot complete
    assert await start(store, job["id"])
    assert await store.complete_job(job["id"], exit_code=0)
    assert not await store.fail_job(job["id"], "late")
    assert not await store.cancel_job(job["id"], "late")
    row = await store.get_job(job["id"])
    assert row is not None
    assert (row["status"], row["progress"], row["exit_code"]) == ("completed", 1.0, 0)
    assert row["error_message"] is None and row["cancel_reason"] is None
    assert row["finished_at"] is not None


async def test_racing_endings_one_wins(store: Store) -> None:
    jobs = [await store.create_job(**job_args()) for _ in range(10)]
    for job in jobs:
        assert await start(store, job["id"])
    for job in jobs:
        results = await asyncio.gather(
            store.complete_job(job["id"]),
            store.fail_job(job["id"], "boom", exit_code=1),
            store.cancel_job(job["id"], REASON_STOPPED, exit_code=-15),
        )
        assert sum(results) == 1
        row = await store.get_job(job["id"])
        assert row is not None
        winner = ["completed", "failed", "cancelled"][results.index(True)]
        assert row["status"] == winner


async def test_fail_queued_job(store: Store) -> None:
    job = await store.create_job(**job_args())
    assert await store.fail_job(job["id"], "executable missing", exit_code=None)
    row = await store.get_job(job["id"])
    assert row is not None
    assert (row["status"], row["error_message"]) == ("failed", "executable missing")


async def test_update_job_plain_columns_only(store: Store) -> None:
    job = await store.create_job(**job_args())
    await store.update_job(job["id"], log_file_path="/l.log", output_path="/o")
    row = await store.get_job(job["id"])
    assert row is not None
    assert (row["log_file_path"], row["output_path"]) == ("/l.log", "/o")
    with pytest.raises(ValueError, match="status"):
        await store.update_job(job["id"], status="completed")
    with pytest.raises(ValueError, match="no_such_column"):
        await store.update_job(job["id"], no_such_column=1)


async def test_progress_clamped_and_frozen_after_end(store: Store) -> None:
    job = await store.create_job(**job_args())
    await store.set_progress(job["id"], 0.25)
    assert (await store.get_job(job["id"]) or {})["progress"] == 0.25
    await store.set_progress(job["id"], 7)
    assert (await store.get_job(job["id"]) or {})["progress"] == 1.0
    await store.cancel_job(job["id"], REASON_STOPPED)
    await store.set_progress(job["id"], 0.1)
    assert (await store.get_job(job["id"]) or {})["progress"] == 1.0
    with pytest.raises(ValueError):
        await store.set_progress(job["id"], float("nan"))


async def _set_heartbeat(store: Store, job_id: int, sql_time: str) -> None:
    conn = sqlite3.connect(store.path, timeout=10)
    try:
        conn.execute(
            f"UPDATE transcription_jobs SET last_heartbeat = {sql_time} WHERE id = ?", (job_id,)
        )
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize("fmt", ["%Y-%m-%d %H:%M:%f", "%Y-%m-%d %H:%M:%S"])
async def test_orphan_query_boundaries(store: Store, fmt: str) -> None:
    fresh, stale, never = [await store.create_job(**job_args()) for _ in range(3)]
    for job in (fresh, stale, never):
        assert await start(store, job["id"])
    await _set_heartbeat(store, fresh["id"], f"strftime('{fmt}', 'now', '-240 seconds')")
    await _set_heartbeat(store, stale["id"], f"strftime('{fmt}', 'now', '-360 seconds')")
    await _set_heartbeat(store, never["id"], "NULL")
    orphans = [j["id"] for j in await store.get_orphaned_jobs(300)]
    assert orphans == [stale["id"], never["id"]]
    # The documented plain-SQL query agrees with the store on these rows.
    conn = sqlite3.connect(store.path)
    try:
        rows = conn.execute(
            "SELECT id FROM transcription_jobs "
            "WHERE last_heartbeat < datetime('now','-300 seconds') ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    assert [r[0] for r in rows] == [stale["id"]]
    # A heartbeat brings a job back; finished jobs are never orphans.
    await store.update_heartbeats([stale["id"], never["id"]])
    assert await store.get_orphaned_jobs(300) == []
    await _set_heartbeat(store, stale["id"], "datetime('now', '-1000 seconds')")
    assert await store.fail_job(stale["id"], "x")
    assert await store.get_orphaned_jobs(300) == []


async def test_heartbeat_only_for_running(store: Store) -> None:
    job = await store.create_job(**job_args())
    await store.update_heartbeat(job["id"])
    assert (await store.get_job(job["id"]) or {})["last_heartbeat"] is None
    assert await start(store, job["id"])
    before = (await store.get_job(job["id"]) or {})["last_heartbeat"]
    await asyncio.sleep(0.01)
    await store.update_heartbeat(job["id"])
    after = (await store.get_job(job["id"]) or {})["last_heartbeat"]
    assert after > before


async def test_instances(store: Store) -> None:
    first = await store.register_instance(pid=10, start_ticks=20, boot_id="b")
    second = await store.register_instance(pid=11, start_ticks=21, boot_id="b")
    assert first != second and len(first) == 32
    before = {i["id"]: i for i in await store.list_instances()}
    assert before[first]["pid"] == 10 and before[first]["start_ticks"] == 20
    await asyncio.sleep(0.01)
    await store.touch_instance(first)
    after = {i["id"]: i for i in await store.list_instances()}
    assert after[first]["last_seen"] > before[first]["last_seen"]
    assert after[second]["last_seen"] == before[second]["last_seen"]


async def test_metrics_history(store: Store) -> None:
    job = await store.create_job(**job_args())
    other = await store.create_job(**job_args())
    await store.record_metrics(job["id"], cpu_percent=10.0, memory_mb=100.0, num_processes=1)
    await store.record_metrics_many(
        [(job["id"], 20.0 + i, 200.0, 3) for i in range(5)] + [(other["id"], 1.0, 1.0, 1)]
    )
    samples = await store.get_metrics(job["id"])
    assert [s["cpu_percent"] for s in samples] == [10.0, 20.0, 21.0, 22.0, 23.0, 24.0]
    assert set(samples[0]) == {"job_id", "time", "cpu_percent", "memory_mb", "num_processes"}
    last_two = await store.get_metrics(job["id"], limit=2)
    assert [s["cpu_percent"] for s in last_two] == [23.0, 24.0]


async def test_backup_is_a_consistent_copy(store: Store, tmp_path: Path) -> None:
    job = await store.create_job(**job_args())
    dest = tmp_path / "copy.db"
    await store.backup(dest)
    await store.backup(dest)  # replaces an existing copy
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT id FROM transcription_jobs").fetchall() == [(job["id"],)]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


async def test_cancelled_caller_does_not_leave_a_transaction_open(store: Store) -> None:
    jobs = [asyncio.ensure_future(store.create_job(**job_args())) for _ in range(20)]
    await asyncio.sleep(0)
    for task in jobs[::2]:
        task.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
    # Writes that were started finish anyway, and the connection is usable afterwards.
    job = await store.create_job(**job_args())
    assert job["id"] >= 1
    assert await store.fail_job(job["id"], f"{ORPHANED_PREFIX} test")
