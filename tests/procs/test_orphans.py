"""cleanup_orphaned_processes against real processes and a real database."""

from __future__ import annotations

import asyncio
import os
import sqlite3

from server.manager import ProcessManager
from server.procs.identity import read_identity
from server.procs.spawn import SpawnedProcess
from server.store import Store
from tests.helpers.spawned import Spawner, alive, exited, pids_from, read_until
from tests.helpers.store_rows import job_args


async def _age_heartbeat(store: Store, job_id: int, seconds: int) -> None:
    conn = sqlite3.connect(store.path, timeout=10)
    try:
        conn.execute(
            "UPDATE transcription_jobs SET last_heartbeat = "
            "strftime('%Y-%m-%d %H:%M:%f', 'now', ?) WHERE id = ?",
            (f"-{seconds} seconds", job_id),
        )
        conn.commit()
    finally:
        conn.close()


async def _live_instance(store: Store) -> str:
    me = read_identity(os.getpid())
    assert me is not None
    return await store.register_instance(pid=me.pid, start_ticks=me.start_ticks, boot_id=me.boot_id)


async def _job_for(
    store: Store, manager: ProcessManager, start_child: Spawner, script: str, *args: object,
    instance_id: str,
) -> tuple[int, list[str], SpawnedProcess]:  # fmt: skip
    job = await store.create_job(**job_args())
    child = await start_child(script, *args, marker=manager.marker(job["id"]))
    lines = await read_until(child, "ready")
    assert await store.register_process(
        job["id"], pid=child.identity.pid, pgid=child.pgid, start_ticks=child.identity.start_ticks,
        boot_id=child.identity.boot_id, instance_id=instance_id, log_file_path="/l",
    )  # fmt: skip
    return int(job["id"]), lines, child


async def test_row_pointing_at_unrelated_process(store: Store, manager: ProcessManager) -> None:
    instance = await _live_instance(store)
    sleeper = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        real = read_identity(sleeper.pid)
        assert real is not None
        job = await store.create_job(**job_args())
        assert await store.register_process(
            job["id"], pid=sleeper.pid, pgid=sleeper.pid, start_ticks=real.start_ticks + 7,
            boot_id=real.boot_id, instance_id=instance, log_file_path="/l",
        )  # fmt: skip
        [report] = await manager.cleanup_orphaned_processes(300, live_instance_ids=[instance])
        assert (report.job_id, report.pid, report.verified, report.killed) == (
            job["id"], sleeper.pid, False, False,
        )  # fmt: skip
        expected = f"orphaned: pid {sleeper.pid} now belongs to another process; not signalled"
        assert report.reason == expected
        row = await store.get_job(job["id"])
        assert row is not None
        assert (row["status"], row["error_message"]) == ("failed", expected)
        assert sleeper.returncode is None and alive(sleeper.pid)
        # Settled once: a second pass finds nothing.
        assert await manager.cleanup_orphaned_processes(300, live_instance_ids=[instance]) == []
    finally:
        sleeper.terminate()  # the test's own process
        await sleeper.wait()


async def test_healthy_job_is_left_alone(
    store: Store, manager: ProcessManager, start_child: Spawner
) -> None:
    instance = await _live_instance(store)
    job_id, _, _child = await _job_for(
        store, manager, start_child, "sleeper.py", 30, instance_id=instance
    )
    assert await manager.cleanup_orphaned_processes(300, live_instance_ids=[instance]) == []
    assert (await store.get_job(job_id) or {})["status"] == "running"
    status = await manager.get_process_status(job_id)
    assert status["running"] is True


async def test_stale_heartbeat_kills_and_fails(
    store: Store, manager: ProcessManager, start_child: Spawner
) -> None:
    instance = await _live_instance(store)
    job_id, lines, _ = await _job_for(
        store, manager, start_child, "forker.py", 2, 30, instance_id=instance
    )
    await _age_heartbeat(store, job_id, 301)
    fresh_id, _, _ = await _job_for(
        store, manager, start_child, "sleeper.py", 30, instance_id=instance
    )
    await _age_heartbeat(store, fresh_id, 299)

    [report] = await manager.cleanup_orphaned_processes(300, live_instance_ids=[instance])
    assert (report.job_id, report.verified, report.killed) == (job_id, True, True)
    assert report.reason == "orphaned: heartbeat older than 300 s; terminated by SIGTERM"
    assert not any(alive(p) for p in pids_from(lines, "child") + pids_from(lines, "ready"))
    assert (await store.get_job(job_id) or {})["error_message"] == report.reason
    assert (await store.get_job(fresh_id) or {})["status"] == "running"


async def test_dry_run_reports_without_acting(
    store: Store, manager: ProcessManager, start_child: Spawner
) -> None:
    instance = await _live_instance(store)
    job_id, lines, _ = await _job_for(
        store, manager, start_child, "sleeper.py", 30, instance_id=instance
    )
    await _age_heartbeat(store, job_id, 1000)
    [report] = await manager.cleanup_orphaned_processes(
        300, live_instance_ids=[instance], dry_run=True
    )
    assert (report.verified, report.killed) == (True, False)
    assert report.reason.startswith("orphaned: heartbeat older than 300 s")
    assert (await store.get_job(job_id) or {})["status"] == "running"
    assert alive(pids_from(lines, "ready")[0])


async def test_process_gone(store: Store, manager: ProcessManager, start_child: Spawner) -> None:
    instance = await _live_instance(store)
    job_id, _, child = await _job_for(
        store, manager, start_child, "sleeper.py", 30, instance_id=instance
    )
    child.process.kill()  # our own child
    await child.process.wait()
    [report] = await manager.cleanup_orphaned_processes(300, live_instance_ids=[instance])
    pid = child.identity.pid
    assert report.reason == f"orphaned: process {pid} is gone"
    assert (report.verified, report.killed) == (False, False)
    assert (await store.get_job(job_id) or {})["status"] == "failed"


async def test_group_outliving_its_leader_is_found_by_marker(
    store: Store, manager: ProcessManager, start_child: Spawner
) -> None:
    instance = await _live_instance(store)
    _job_id, lines, child = await _job_for(
        store, manager, start_child, "forker.py", 2, 30, instance_id=instance
    )
    grandchildren = pids_from(lines, "child")
    child.process.kill()  # the leader only; its children live on
    await exited(child)
    assert all(alive(p) for p in grandchildren)
    [report] = await manager.cleanup_orphaned_processes(300, live_instance_ids=[instance])
    assert (report.verified, report.killed) == (True, True)
    assert report.reason.startswith("orphaned: process")
    assert not any(alive(p) for p in grandchildren)


async def test_dead_server_instance_settles_its_jobs(
    store: Store, manager: ProcessManager, start_child: Spawner
) -> None:
    # A predecessor server: its recorded identity is a process that has exited.
    gone = await start_child("sleeper.py", 0)
    await gone.process.wait()
    dead = await store.register_instance(
        pid=gone.identity.pid, start_ticks=gone.identity.start_ticks, boot_id=gone.identity.boot_id
    )
    alive_instance = await _live_instance(store)
    job_id, lines, _ = await _job_for(
        store, manager, start_child, "sleeper.py", 30, instance_id=dead
    )
    kept_id, _, _ = await _job_for(
        store, manager, start_child, "sleeper.py", 30, instance_id=alive_instance
    )
    # Listed as live: nothing to do. Not listed, but its process is alive: still live.
    assert await manager.cleanup_orphaned_processes(300, live_instance_ids=[dead]) == []
    [report] = await manager.cleanup_orphaned_processes(300)
    assert report.job_id == job_id
    assert report.reason == (
        f"orphaned: server instance {dead[:8]}… is gone; terminated by SIGTERM"
    )
    assert report.killed and not alive(pids_from(lines, "ready")[0])
    assert (await store.get_job(kept_id) or {})["status"] == "running"


async def test_own_job_with_gone_process_is_settled_unless_excluded(
    store: Store, start_child: Spawner
) -> None:
    instance = await _live_instance(store)
    manager = ProcessManager(store, kill_grace=0.5, instance_id=instance)
    job_id, _, child = await _job_for(
        store, manager, start_child, "sleeper.py", 30, instance_id=instance
    )
    child.process.kill()
    await child.process.wait()
    # The runner waiting on it says so, and records the ending itself.
    assert await manager.cleanup_orphaned_processes(300, exclude_job_ids=[job_id]) == []
    [report] = await manager.cleanup_orphaned_processes(300)
    assert report.job_id == job_id
    assert report.reason == f"orphaned: process {child.identity.pid} is gone"


async def test_excluded_jobs_are_never_settled(
    store: Store, manager: ProcessManager, start_child: Spawner
) -> None:
    instance = await _live_instance(store)
    job_id, _, child = await _job_for(
        store, manager, start_child, "sleeper.py", 30, instance_id=instance
    )
    await _age_heartbeat(store, job_id, 1000)
    assert await manager.cleanup_orphaned_processes(300, exclude_job_ids={job_id}) == []
    assert (await store.get_job(job_id) or {})["status"] == "running"
    assert alive(child.identity.pid)
