"""Tree sampling through the path the monitor uses (LocalExecutor.sample), and the
manager's status and log views."""

from __future__ import annotations

import asyncio
from pathlib import Path

from server.executors.base import LocalHandle
from server.executors.local import LocalExecutor
from server.manager import ProcessManager
from server.procs.kill import Target, kill_tree
from server.procs.sampler import Sample, TreeSampler
from server.store import Store
from tests.helpers.spawned import Spawner, exited, read_until
from tests.helpers.store_rows import job_args


async def test_sampler_sums_child_and_grandchildren(
    manager: ProcessManager, start_child: Spawner
) -> None:
    child = await start_child("forker.py", 3, 30, marker="s:1")
    await read_until(child, "ready")
    executor = LocalExecutor()
    handle = LocalHandle(7, "s:1", child.identity.pid, child.pgid, child.identity, child)
    first = (await executor.sample([handle]))[7]
    assert first.running is True and first.pid == child.process.pid
    assert first.num_processes == 4
    assert first.memory_bytes > 4 * 2**20  # four Python interpreters
    assert first.fields()["memory_mb"] == round(first.memory_bytes / 2**20, 1)  # MiB
    assert first.elapsed_seconds >= 0
    await asyncio.sleep(0.05)
    second = (await executor.sample([handle]))[7]
    assert second.num_processes == 4
    assert second.cpu_percent >= 0.0

    await kill_tree(Target.of(child.pgid, child.identity, "s:1"), grace=1, escapees=True)
    await child.process.wait()
    gone = (await executor.sample([handle]))[7]
    assert gone == Sample(
        running=False, pid=child.process.pid, cpu_percent=0.0, memory_bytes=0,
        elapsed_seconds=0.0, num_processes=0,
    )  # fmt: skip
    executor.sampler.forget(child.process.pid)


async def test_sampler_ignores_zombie_root(start_child: Spawner) -> None:
    child = await start_child("sleeper.py", 0)
    await exited(child)
    # Exited: a zombie until reaped, or gone. Either way, not running.
    sample = (await asyncio.to_thread(TreeSampler().sample_many, [child.process.pid]))[child.process.pid]
    assert sample.running is False and sample.num_processes == 0


async def test_status_only_for_verified_process(
    store: Store, manager: ProcessManager, start_child: Spawner
) -> None:
    child = await start_child("sleeper.py", 30)
    await read_until(child, "ready")
    good = await store.create_job(**job_args())
    bad = await store.create_job(**job_args())
    for job, ticks in ((good, child.identity.start_ticks), (bad, child.identity.start_ticks + 1)):
        assert await store.register_process(
            job["id"], pid=child.process.pid, pgid=child.pgid, start_ticks=ticks,
            boot_id=child.identity.boot_id, instance_id="i", log_file_path="/l",
        )  # fmt: skip
    status = await manager.get_process_status(good["id"])
    assert status["running"] is True and status["num_processes"] == 1
    assert (await manager.get_process_status(bad["id"]))["running"] is False
    assert (await manager.get_process_status(9999))["running"] is False


async def test_logs_through_the_manager(
    store: Store, manager: ProcessManager, tmp_path: Path
) -> None:
    job = await store.create_job(**job_args())
    assert await manager.get_log_path(job["id"]) is None
    assert await manager.get_logs(job["id"]) == []
    log = tmp_path / "job.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    await store.update_job(job["id"], log_file_path=str(log))
    assert await manager.get_log_path(job["id"]) == log
    assert await manager.get_logs(job["id"], lines=3) == ["line 97", "line 98", "line 99"]
    assert len(await manager.get_logs(job["id"])) == 50
