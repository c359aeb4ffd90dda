"""The server keeps the database honest: stale and left-behind jobs get settled."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from server.app import create_app
from server.executors.base import job_marker
from server.procs.identity import MARKER_ENV, read_identity
from server.store import Store
from tests.helpers.health import health, health_until
from tests.helpers.procs import is_alive, wait_until


async def seed_running_job(db: Path, child: subprocess.Popen[bytes], instance: dict[str, Any]) -> int:
    """A `running` row for `child`, owned by the given server instance."""
    store = await Store.open(db)
    try:
        job = await store.create_job(
            filename="a.wav", original_path="/nonexistent/a.wav", duration_seconds=1.0,
            model="tiny.en", language="auto", processes=1, threads=1,
            chunk_seconds=0.0, overlap_seconds=0.0, on_disconnect="keep",
        )
        instance_id = await store.register_instance(**instance)
        me = read_identity(child.pid)
        assert me is not None
        await store.register_process(
            job["id"], pid=me.pid, pgid=me.pid, start_ticks=me.start_ticks, boot_id=me.boot_id,
            instance_id=instance_id, log_file_path=str(db.parent / "x.log"),
        )
        return int(job["id"])
    finally:
        await store.close()


def dead_instance() -> dict[str, Any]:
    """A server instance whose process has exited: its row names a process that is gone."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = read_identity(gone.pid)
    assert ident is not None
    gone.wait()
    return {"pid": ident.pid, "start_ticks": ident.start_ticks, "boot_id": ident.boot_id}


def start_sleeper() -> subprocess.Popen[bytes]:
    """A group leader the test owns, standing in for a pipeline a dead server left."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        start_new_session=True, stdin=subprocess.DEVNULL,
    )


async def settled(client: Any, job_id: int) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            job = await (await client.get(f"/api/jobs/{job_id}")).json()
            if job["status"] != "running":
                return job
            await asyncio.sleep(0.1)


async def test_restart_settles_jobs_of_a_dead_instance(aiohttp_client, make_config):
    # The orphan rule itself; with resuming on (the default) such a job is queued again.
    config = make_config(resume_interrupted=False)
    config.data_dir.mkdir(parents=True)
    child = start_sleeper()
    try:
        job_id = await seed_running_job(config.db_path, child, dead_instance())
        client = await aiohttp_client(create_app(config))
        job = await settled(client, job_id)
        assert job["status"] == "failed"
        assert job["error_message"].startswith("orphaned:")
        assert "instance" in job["error_message"]
        # the recorded identity matched, so the server killed it
        assert await asyncio.to_thread(wait_until, lambda: not is_alive(child.pid), 5)
    finally:
        child.kill()
        child.wait()


async def test_restart_resumes_a_job_its_dead_server_left_running(aiohttp_client, make_config):
    config = make_config("--lines", "3")  # resume_interrupted: on by default
    config.data_dir.mkdir(parents=True)
    child = start_sleeper()
    try:
        job_id = await seed_running_job(config.db_path, child, dead_instance())
        client = await aiohttp_client(create_app(config))
        job = await settled(client, job_id)
        # What was left of it (provably its own) is killed; the job runs again, resumed.
        assert await asyncio.to_thread(wait_until, lambda: not is_alive(child.pid), 5)
        async with asyncio.timeout(20):
            while job["status"] in ("queued", "running"):
                await asyncio.sleep(0.05)
                job = await (await client.get(f"/api/jobs/{job_id}")).json()
        assert job["status"] == "completed", job
        log = Path(job["log_file_path"]).read_text().splitlines()
        resumed = [line for line in log if "after a server restart" in line]
        assert len(resumed) == 1 and resumed[0].startswith("[transcriptor] resumed at "), log
        argv = json.loads((Path(job["output_path"]) / "argv.json").read_text())
        assert "--resume" in argv
    finally:
        child.kill()
        child.wait()


async def test_stale_heartbeat_fails_job_as_orphaned(aiohttp_client, make_config):
    config = make_config(orphan_timeout=30)
    config.data_dir.mkdir(parents=True)
    child = start_sleeper()
    try:
        me = read_identity(os.getpid())
        assert me is not None  # an instance that is alive: only the heartbeat is stale
        job_id = await seed_running_job(
            config.db_path, child, {"pid": me.pid, "start_ticks": me.start_ticks,
                                    "boot_id": me.boot_id}
        )
        with sqlite3.connect(config.db_path) as db:
            db.execute(
                "UPDATE transcription_jobs SET last_heartbeat = datetime('now', '-31 seconds')"
                " WHERE id = ?", (job_id,),
            )
        client = await aiohttp_client(create_app(config))
        job = await settled(client, job_id)
        assert job["status"] == "failed"
        assert "heartbeat older than 30 s" in job["error_message"]
        assert job["error_message"].startswith("orphaned:")
    finally:
        child.kill()
        child.wait()


async def test_pid_reused_by_innocent_process_is_not_signalled(aiohttp_client, make_config):
    config = make_config()
    # Resuming is on, and its server is gone, but something alive that cannot be proven
    # the job's keeps the orphan rule: failed, never resumed beside it.
    assert config.resume_interrupted
    config.data_dir.mkdir(parents=True)
    innocent = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.DEVNULL
    )
    try:
        job_id = await seed_running_job(config.db_path, innocent, dead_instance())
        with sqlite3.connect(config.db_path) as db:  # the pid is now someone else's
            db.execute("UPDATE transcription_jobs SET process_start_ticks = process_start_ticks - 7")
        client = await aiohttp_client(create_app(config))
        job = await settled(client, job_id)
        assert job["status"] == "failed"
        assert "not signalled" in job["error_message"]
        # Two more orphan passes; each waits out the kill grace of anything it signals.
        passes = (await health(client))["orphan_passes"]
        await health_until(client, lambda body: body["orphan_passes"] >= passes + 2)
        assert innocent.poll() is None, "the innocent process was signalled"
    finally:
        innocent.kill()
        innocent.wait()


def test_marker_names_install_and_job():
    assert job_marker("abc", 7) == "abc:7"
    assert MARKER_ENV == "TRANSCRIPTOR_JOB"
