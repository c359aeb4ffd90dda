"""Crash and restart: SIGKILL the server or a pipeline leader; nothing survives, rows settle.

A recycled pid is the other half of the promise: a row naming a process that is not ours
any more must be settled without that process ever being signalled.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers.audio import JFK, SPEECH_CLIP
from tests.helpers.procs import alive, proc_key
from tests.helpers.server_proc import ServerProcess
from tests.helpers.waiting import wait_for

KILLS = 20
AUDIO = JFK if JFK.exists() else SPEECH_CLIP
# Two workers on small chunks, so the job is mid-run with both workers alive for seconds.
REAL_JOB = {"processes": "2", "threads": "1", "chunk_seconds": "3", "overlap_seconds": "1"}


def job_processes(server: ServerProcess, job: dict[str, Any]) -> list[psutil.Process]:
    """The job's leader and every process under it, checked to descend from the server."""
    leader_pid = job["process_id"]
    assert server.is_descendant(leader_pid), f"leader {leader_pid} is not under server {server.pid}"
    leader = psutil.Process(leader_pid)
    return [leader, *leader.children(recursive=True)]


def spawned_workers(procs: list[psutil.Process]) -> list[psutil.Process]:
    workers = []
    for proc in procs:
        try:
            if "spawn_main" in " ".join(proc.cmdline()):
                workers.append(proc)
        except psutil.Error:
            continue
    return workers


def wait_for_workers(server: ServerProcess, job_id: int, count: int = 2) -> list[tuple[int, float]]:
    """Wait until the real pipeline's workers exist; the (pid, create_time) of the whole job."""

    def up() -> list[tuple[int, float]] | None:
        job = server.job(job_id)
        assert job["status"] in ("queued", "running"), job
        if job["status"] != "running" or not job["process_id"]:
            return None
        try:
            procs = job_processes(server, job)
            if len(spawned_workers(procs)) < count:
                return None
            return [proc_key(p) for p in procs]
        except psutil.Error:
            return None

    return list(wait_for(up, 60, f"job {job_id}'s {count} workers", interval=0.05))


@pytest.mark.slow
def test_sigkill_server_mid_job_20_times(start_server, record):
    # The orphan rule after a crash; with resuming on (the default) such jobs are resumed
    # (tests/reliability/test_resume.py).
    server = start_server("--max-concurrent-jobs", "1", "--no-resume-interrupted")
    settled: list[str] = []
    began = time.monotonic()
    for attempt in range(KILLS):
        job = server.upload(AUDIO, on_disconnect="keep", **REAL_JOB)
        job_procs = wait_for_workers(server, job["id"])
        assert len(job_procs) >= 3, job_procs  # leader and two workers at least
        server.sigkill()
        wait_for(
            lambda procs=job_procs: not any(alive(key) for key in procs),
            2.0,
            f"attempt {attempt}: every process of the job to be gone within 2 s of the server",
        )
        server.start()
        row = server.job(job["id"])
        assert row["status"] == "failed", (attempt, row)
        assert row["error_message"].startswith("orphaned:"), row["error_message"]
        assert row["finished_at"], row
        assert [j["id"] for j in server.jobs() if j["status"] == "running"] == []
        # Nothing uploaded is lost with the crash: the input is still where the row says.
        assert Path(row["original_path"]).is_file()
        settled.append(row["error_message"])
    # Every row of every attempt is settled, seen through the last server.
    statuses = {j["id"]: j["status"] for j in server.jobs()}
    assert list(statuses.values()) == ["failed"] * KILLS, statuses
    record(
        kills=KILLS,
        audio=AUDIO.name,
        seconds=round(time.monotonic() - began, 1),
        reason_example=settled[0],
    )


@pytest.mark.slow
def test_sigkill_pipeline_leader_fails_job_and_workers_die(start_server, record):
    server = start_server()
    job = server.upload(AUDIO, on_disconnect="keep", **REAL_JOB)
    job_procs = wait_for_workers(server, job["id"])
    leader_pid = server.job(job["id"])["process_id"]
    server.signal_descendant(leader_pid, signal.SIGKILL)
    final = server.wait_final(job["id"], timeout=15)
    assert final["status"] == "failed", final
    assert final["exit_code"] == -9, final
    assert "SIGKILL" in final["error_message"], final
    # PDEATHSIG takes the workers down with their leader.
    wait_for(lambda: not any(alive(k) for k in job_procs), 3, "the workers to die")
    assert server.health()["status"] == "ok"
    record(error_message=final["error_message"], exit_code=final["exit_code"])


# -- a recycled pid -------------------------------------------------------------------------

INNOCENT = """
import signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
def note(signum, frame):
    log.write(f"{signal.Signals(signum).name}\\n")
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
            signal.SIGUSR2, signal.SIGCONT):
    signal.signal(sig, note)
log.write("ready\\n")
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    time.sleep(0.1)
"""


def start_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def insert_running_row(db: Path, *, pid: int, ticks: int, boot: str, instance: str, note: str) -> int:
    """A `running` row as a crashed server would have left it, heartbeat fresh."""
    now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    with sqlite3.connect(db) as conn:
        cursor = conn.execute(
            f"""INSERT INTO transcription_jobs (filename, original_path, model, language,
                processes, threads, status, progress, process_id, process_group_id,
                process_start_ticks, process_boot_id, instance_id, created_at, started_at,
                last_heartbeat, on_disconnect)
            VALUES (?, ?, 'tiny.en', 'auto', 1, 1, 'running', 0.5, ?, ?, ?, ?, ?, {now}, {now},
                {now}, 'keep')""",
            (note, f"/nonexistent/{note}", pid, pid, ticks, boot, instance),
        )
        return int(cursor.lastrowid or 0)


def test_restart_never_signals_a_process_that_reused_a_jobs_pid(start_server, tmp_path, record):
    server = start_server(fake=["--lines", "1"])
    server.stop()
    db = server.data_dir / "transcriptor.db"
    # A predecessor that died: its instance row names a pid that is not it any more.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO server_instances (id, pid, start_ticks, boot_id, started_at, last_seen)"
            " VALUES ('dead0000', 1, 1, ?, '2020-01-01 00:00:00.000', '2020-01-01 00:00:00.000')",
            (boot_id(),),
        )
    innocents: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    try:
        for i in range(2):
            log = tmp_path / f"innocent-{i}.log"
            logs.append(log)
            # Its own session, so even a wrong killpg could only reach this process.
            innocents.append(
                subprocess.Popen([sys.executable, "-c", INNOCENT, str(log)], start_new_session=True)
            )
        for log in logs:
            wait_for(lambda log=log: log.exists() and "ready" in log.read_text(), 10, "innocent ready")
        wrong, right = innocents
        rows = {
            # Same pid, another start time: plainly not the process the job started.
            "wrong start ticks": insert_running_row(
                db, pid=wrong.pid, ticks=start_ticks(wrong.pid) + 977, boot=boot_id(),
                instance="dead0000", note="wrong-ticks",
            ),
            # Same pid, same start time, another boot: not ours either.
            "wrong boot id": insert_running_row(
                db, pid=wrong.pid, ticks=start_ticks(wrong.pid), boot="0" * 32,
                instance="dead0000", note="wrong-boot",
            ),
            # The nearest miss: the pid came round again one clock tick (10 ms) later.
            "start ticks off by one": insert_running_row(
                db, pid=right.pid, ticks=start_ticks(right.pid) - 1, boot=boot_id(),
                instance="dead0000", note="one-tick",
            ),
            "pid gone": insert_running_row(
                db, pid=4_000_000, ticks=1, boot=boot_id(), instance="dead0000", note="gone",
            ),
        }  # fmt: skip
        server.start()  # resuming on: only a job of which nothing runs any more is resumed
        resumed = server.wait_final(rows.pop("pid gone"), timeout=20)
        assert resumed["status"] == "completed", resumed
        reasons = {}
        for what, job_id in rows.items():
            row = server.wait_final(job_id, timeout=10)
            assert row["status"] == "failed", (what, row)
            assert row["error_message"].startswith("orphaned:"), (what, row)
            reasons[what] = row["error_message"]
        # Three more orphan passes (each waits out the kill grace of what it signals): still
        # nobody touched them.
        server.wait_orphan_passes(3)
        for proc, log in zip(innocents, logs, strict=True):
            assert proc.poll() is None, f"innocent {proc.pid} died: {proc.returncode}"
            assert log.read_text() == "ready\n", f"innocent {proc.pid} got: {log.read_text()!r}"
        assert [j for j in server.jobs() if j["status"] == "running"] == []
        record(rows=len(rows), reasons=reasons)
    finally:
        for proc in innocents:  # started by this test
            proc.kill()
            proc.wait(timeout=5)


def test_sigkill_server_fake_job_group_dies_by_its_lifeline(start_server, tone):
    """SIGKILL the server mid-job: the job's whole group (leader and two grandchildren) dies
    by the stdin lifeline within 2 s, and the restarted server settles the row."""
    server = start_server(  # the orphan rule; resuming would queue the job again
        "--no-resume-interrupted", fake=["--lines", "100000", "--interval", "0.05", "--grandchildren", "2"]
    )
    job = server.upload(tone, on_disconnect="keep")
    running = server.wait_running(job["id"])
    wait_for(lambda: len(job_processes(server, server.job(job["id"]))) >= 3, 10, "grandchildren")
    procs = [proc_key(p) for p in job_processes(server, running)]
    server.sigkill()
    wait_for(lambda: not any(alive(k) for k in procs), 2, "the job's group to die by its lifeline")
    server.start()
    row = server.job(job["id"])
    assert row["status"] == "failed" and row["error_message"].startswith("orphaned:"), row
    assert os.path.exists(row["original_path"])


def test_second_server_on_the_same_data_dir_never_touches_the_firsts_jobs(start_server, tone, record):
    """Two instances on one database: the second's start-up settling, heartbeats, orphan
    reaping and shutdown must leave the first's running job alone."""
    first = start_server(fake=["--lines", "100000", "--interval", "0.05", "--grandchildren", "1"])
    job = first.upload(tone, on_disconnect="keep")
    first.wait_running(job["id"])
    keys = [proc_key(p) for p in job_processes(first, first.job(job["id"]))]
    # A timeout of 6 heartbeats: a first server slowed by load must not look dead.
    second = start_server("--orphan-timeout", "3", fake=["--lines", "3"], data_dir=first.data_dir)
    # Passes past the orphan timeout (every 0.5 s, 3 s): had the second taken the first's
    # fresh heartbeats for stale ones, it would have reaped the job by now.
    second.wait_orphan_passes(8)
    assert all(alive(k) for k in keys), "the second server touched the first's job"
    assert second.job(job["id"])["status"] == "running"
    took = second.stop()
    assert all(alive(k) for k in keys), "the second server's shutdown touched the first's job"
    row = first.job(job["id"])
    assert row["status"] == "running", row
    assert first.stop_job(job["id"]).json()["status"] == "cancelled"
    record(second_stop_seconds=round(took, 2))
