"""Killing process groups: escalation, grandchildren, setsid escapees, identity checks."""

from __future__ import annotations

import asyncio
import os
import threading
import time

from server.manager import ProcessManager
from server.procs.identity import ProcessIdentity, read_identity
from server.procs.kill import Target, kill_tree
from server.procs.spawn import SpawnedProcess
from server.store import Store
from tests.helpers.spawned import Spawner, alive, exited, pids_from, read_until
from tests.helpers.store_rows import job_args


async def register(store: Store, child: SpawnedProcess, **overrides: object) -> int:
    job = await store.create_job(**job_args())
    ident = child.identity
    args: dict[str, object] = {
        "pid": ident.pid,
        "pgid": child.pgid,
        "start_ticks": ident.start_ticks,
        "boot_id": ident.boot_id,
        "instance_id": "test-instance",
        "log_file_path": "/nonexistent.log",
    }
    args.update(overrides)
    assert await store.register_process(job["id"], **args)  # type: ignore[arg-type]
    return int(job["id"])


async def test_group_kill_leaves_no_grandchildren(
    manager: ProcessManager, start_child: Spawner
) -> None:
    child = await start_child("forker.py", 3, 30, marker="t:1")
    lines = await read_until(child, "ready")
    grandchildren = pids_from(lines, "child")
    assert len(grandchildren) == 3 and all(alive(p) for p in grandchildren)
    began = time.monotonic()
    report = await kill_tree(Target.of(child.pgid, child.identity, "t:1"), grace=5, escapees=True)
    assert time.monotonic() - began < 3  # returns as soon as the group is gone
    assert report.signalled and not report.sigkilled
    assert (report.survivors, report.reason) == (0, "terminated by SIGTERM")
    assert not any(alive(p) for p in grandchildren)
    assert await child.process.wait() < 0


async def test_sigterm_ignored_gets_sigkill_after_grace(
    manager: ProcessManager, start_child: Spawner
) -> None:
    child = await start_child("forker.py", 2, 30, "--ignore-term", marker="t:2")
    grandchildren = pids_from(await read_until(child, "ready"), "child")
    began = time.monotonic()
    report = await kill_tree(Target.of(child.pgid, child.identity, "t:2"), grace=0.5, escapees=True)
    elapsed = time.monotonic() - began
    assert 0.5 <= elapsed < 4
    assert report.signalled and report.sigkilled and report.survivors == 0
    assert report.reason == "killed with SIGKILL after 0.5 s grace"
    assert not any(alive(p) for p in [child.process.pid, *grandchildren])
    assert await child.process.wait() == -9


async def test_kill_process_by_job_id(
    store: Store, manager: ProcessManager, start_child: Spawner
) -> None:
    job_id = 0
    child = await start_child("ignore_term.py", 30, marker=manager.marker(await _next_id(store)))
    await read_until(child, "ready")
    job_id = await register(store, child)
    assert manager.marker(job_id) == f"{store.install_id}:{job_id}"
    report = await manager.kill_process(job_id, grace=0.3)
    assert (report.job_id, report.sigkilled, report.survivors) == (job_id, True, 0)
    # The kill never touches the job's status.
    assert (await store.get_job(job_id) or {})["status"] == "running"
    again = await manager.kill_process(job_id)
    assert (again.signalled, again.reason) == (False, "already gone")


async def _next_id(store: Store) -> int:
    jobs = await store.list_jobs(limit=1)
    return (jobs[0]["id"] if jobs else 0) + 1


async def test_setsid_grandchild_is_found_by_marker(
    store: Store, manager: ProcessManager, start_child: Spawner
) -> None:
    job_id = await _next_id(store)
    child = await start_child("setsid_grandchild.py", 30, marker=manager.marker(job_id))
    [grandchild] = pids_from(await read_until(child, "ready"), "grandchild")
    assert os.getpgid(grandchild) != child.pgid
    assert await register(store, child) == job_id

    # A plain group kill cannot reach it...
    report = await manager.kill_process(job_id, grace=1)
    assert report.signalled and report.survivors == 0
    assert alive(grandchild)
    # ...the tree kill finds it through the marker it inherited.
    report = await manager.kill_process_tree(job_id, grace=1)
    assert report.signalled and report.survivors == 0
    assert not alive(grandchild)


async def test_kill_group_reaches_escapee_when_leader_is_gone(
    manager: ProcessManager, start_child: Spawner
) -> None:
    child = await start_child("setsid_grandchild.py", 30, marker="t:3")
    [grandchild] = pids_from(await read_until(child, "ready"), "grandchild")
    child.process.kill()  # our own child; its grandchild lives on in its own session
    # Not wait(): in Python 3.11 it also waits for the grandchild to close the stdout pipe.
    await exited(child)
    report = await kill_tree(Target.of(child.pgid, child.identity, "t:3"), grace=1, escapees=True)
    assert report.signalled and report.survivors == 0
    assert not alive(grandchild)


async def test_unrelated_process_is_never_signalled(
    store: Store, manager: ProcessManager
) -> None:
    # `sleep` stays in our own process group: exactly what must never be signalled.
    sleeper = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        ident = ProcessIdentity(sleeper.pid, 0, "")
        real = read_identity(sleeper.pid)
        assert real is not None
        job = await store.create_job(**job_args())
        assert await store.register_process(
            job["id"], pid=sleeper.pid, pgid=sleeper.pid, start_ticks=real.start_ticks + 1,
            boot_id=real.boot_id, instance_id="x", log_file_path="/l",
        )  # fmt: skip
        for kill in (manager.kill_process, manager.kill_process_tree):
            report = await kill(job["id"], grace=0.2)
            assert (report.signalled, report.reason) == (False, "not signalled: identity mismatch")
        report = await kill_tree(Target.of(os.getpgrp(), ident, None), grace=0.2, escapees=True)
        assert not report.signalled
        assert sleeper.returncode is None and alive(sleeper.pid)
    finally:
        sleeper.terminate()  # the test's own process
        await sleeper.wait()


async def test_kill_does_not_wait_for_a_busy_default_thread_pool(start_child: Spawner) -> None:
    # Every thread of the default pool blocked (as by slow replays): a kill still runs.
    child = await start_child("forker.py", 2, 30, marker="t:busy")
    grandchildren = pids_from(await read_until(child, "ready"), "child")
    loop = asyncio.get_running_loop()
    release = threading.Event()
    blockers = [loop.run_in_executor(None, release.wait) for _ in range(64)]
    try:
        report = await asyncio.wait_for(
            kill_tree(Target.of(child.pgid, child.identity, "t:busy"), grace=5, escapees=True), 10
        )
        assert report.signalled and report.survivors == 0
        assert not any(alive(p) for p in grandchildren)
    finally:
        release.set()
        await asyncio.gather(*blockers)
