"""Containment through a real server: cgroups (the default where the kernel allows) and
the forced fallback to process groups (a --cgroup-root on a plain folder)."""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.helpers.audio import REPO
from tests.helpers.cgroups import require_cgroups
from tests.helpers.env import clean_env
from tests.helpers.procs import daemon_pid, is_alive
from tests.helpers.server_proc import ServerProcess
from tests.helpers.waiting import wait_for

DAEMON_SECONDS = 120  # the daemon's own end, should it escape


@pytest.fixture(autouse=True)
def need_cgroups(request: pytest.FixtureRequest) -> None:
    if "fallback" not in request.node.name:
        require_cgroups().close()


def cgroup_parent(server: ServerProcess) -> Path:
    """The parent cgroup the server announced at start-up."""
    def announced() -> Path | None:
        match = re.search(r"one cgroup per job under (\S+)", server.stderr_path.read_text())
        return Path(match.group(1)) if match else None

    return Path(wait_for(announced, 10, "the containment log line"))


def daemon_job(start_server, tone, tmp_path: Path, *args: str, on_disconnect: str = "keep"):  # type: ignore[no-untyped-def]
    pidfile = tmp_path / f"daemon-{time.monotonic_ns()}.pid"
    helper = f"daemon.py {pidfile} {DAEMON_SECONDS}"
    server = start_server(*args, fake=["--lines", "100000", "--interval", "0.1", "--helper", helper])
    job = server.upload(tone, on_disconnect=on_disconnect)
    server.wait_running(job["id"])
    pid = wait_for(lambda: daemon_pid(pidfile), 15, "the daemon's pid file")
    proc = psutil.Process(pid)
    assert proc.environ() == {} and os.getsid(pid) != server.job(job["id"])["process_id"]
    return server, job, pid


def test_the_daemon_dies_with_a_stop(start_server, tone, tmp_path, record):
    server, job, pid = daemon_job(start_server, tone, tmp_path)
    assert server.get_json("/api/health")["containment"] == "cgroup"
    parent = cgroup_parent(server)
    assert pid in [int(p) for p in (parent / f"job-{job['id']}" / "cgroup.procs").read_text().split()]
    began = time.monotonic()
    assert server.stop_job(job["id"]).json()["status"] == "cancelled"
    took = time.monotonic() - began
    assert not is_alive(pid)
    assert not (parent / f"job-{job['id']}").exists(), "the job's cgroup was not removed"
    server.stop()
    assert not parent.exists(), "the server's parent cgroup was not removed at shutdown"
    record(stop_seconds=round(took, 2))


def test_the_daemon_dies_when_the_last_client_leaves(start_server, tone, tmp_path):
    server, job, pid = daemon_job(start_server, tone, tmp_path, on_disconnect="cancel")

    async def visit() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(server.ws_url) as ws:
            await ws.send_json({"type": "subscribe", "job": job["id"]})
            await ws.receive_json(timeout=10)

    asyncio.run(visit())
    final = server.wait_final(job["id"])
    assert final["status"] == "cancelled", final
    wait_for(lambda: not is_alive(pid), 5, "the daemon to die with the disconnect")


def test_the_daemon_dies_after_a_server_sigkill_and_restart(start_server, tone, tmp_path, record):
    # The orphan rule; resuming would queue the job again.
    server, job, pid = daemon_job(start_server, tone, tmp_path, "--no-resume-interrupted")
    parent = cgroup_parent(server)
    server.sigkill()
    # The lifeline takes the group down; the daemon left the group and survives the crash.
    assert is_alive(pid), "expected the daemon to outlive the server (else this proves nothing)"
    began = time.monotonic()
    server.start()
    took = time.monotonic() - began
    assert not is_alive(pid), "the restarted server did not kill the daemon by its cgroup"
    row = server.job(job["id"])
    assert row["status"] == "failed" and row["error_message"].startswith("orphaned:"), row
    assert "cgroup.kill" in row["error_message"] or "SIGTERM" in row["error_message"], row
    assert not (parent / f"job-{job['id']}").exists(), "the leftover cgroup was not removed"
    record(restart_seconds=round(took, 2))


def test_cleanup_kills_the_daemon_by_its_cgroup_after_a_server_sigkill(start_server, tone, tmp_path):
    import subprocess
    import sys

    server, job, pid = daemon_job(start_server, tone, tmp_path)
    parent = cgroup_parent(server)
    server.sigkill()
    assert is_alive(pid), "expected the daemon to outlive the server (else this proves nothing)"
    # From another folder: the command finds the job's cgroup by the install's name.
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "cleanup", "--data-dir", str(server.data_dir),
         "--timeout", "0"],
        cwd=tmp_path, env=clean_env(PYTHONPATH=str(REPO)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not is_alive(pid), result.stdout
    assert f"job {job['id']}" in result.stdout and "orphaned" in result.stdout, result.stdout
    assert not (parent / f"job-{job['id']}").exists(), "the leftover cgroup was not removed"


def test_a_memory_hog_is_capped_and_its_neighbour_completes(start_server, tone, behaviours, record):
    args = behaviours(
        hog=["--exec-helper", "hog.py 1000 60"],
        calm=["--lines", "30", "--interval", "0.1"],
    )
    server = start_server("--job-memory-mb", "64", "--max-concurrent-jobs", "2", *args)
    calm = server.upload(tone, model="calm", on_disconnect="keep")
    hog = server.upload(tone, model="hog", on_disconnect="keep")
    failed = server.wait_final(hog["id"], timeout=60)
    assert failed["status"] == "failed", failed
    assert "memory limit of 64 MiB" in failed["error_message"], failed
    done = server.wait_final(calm["id"], timeout=60)
    assert done["status"] == "completed", done
    assert server.get_json("/api/health")["status"] == "ok"
    record(hog_error=failed["error_message"])


def test_short_lived_children_show_in_cpu(start_server, tone, record):
    server = start_server(fake=["--lines", "100000", "--interval", "0.1", "--helper", "churn.py 8"])
    job = server.upload(tone, on_disconnect="keep")
    server.wait_running(job["id"])
    samples: list[float] = []

    def enough() -> bool:
        metrics = server.job(job["id"]).get("metrics") or {}
        if metrics.get("running"):
            samples.append(float(metrics["cpu_percent"]))
        return len(samples) >= 8

    wait_for(enough, 30, "eight metrics samples", interval=0.5)
    average = statistics.mean(samples[1:])
    assert average > 20, samples  # each child burns a core for 0.3 s
    server.stop_job(job["id"])
    record(churn_cpu_percent=round(average, 1))


def test_fallback_when_cgroups_are_refused(start_server, tone, tmp_path, record):
    """A --cgroup-root on a plain folder: process groups and markers, said plainly. The
    daemon escapes there (documented); it ends by itself, and is never signalled."""
    plain = tmp_path / "not-a-cgroup"
    plain.mkdir()
    pidfile = tmp_path / "daemon.pid"
    server = start_server(
        "--cgroup-root", str(plain),
        fake=["--lines", "100000", "--interval", "0.1", "--helper", f"daemon.py {pidfile} 5"],
    )  # fmt: skip
    assert server.get_json("/api/health")["containment"] == "process-group"
    assert "process group" in server.request("GET", "/").body.decode()
    assert "no cgroups" in server.stderr_path.read_text()
    job = server.upload(tone, on_disconnect="keep")
    server.wait_running(job["id"])
    pid = wait_for(lambda: daemon_pid(pidfile), 15, "the daemon's pid file")
    assert server.stop_job(job["id"]).json()["status"] == "cancelled"
    escaped = is_alive(pid)
    wait_for(lambda: not is_alive(pid), 30, "the escaped daemon to end by itself")
    assert list(plain.iterdir()) == []
    record(fallback_daemon_escaped=escaped)


def test_fallback_refuses_a_memory_limit(start_server, tmp_path):
    server = start_server("--cgroup-root", str(tmp_path), "--job-memory-mb", "100", wait=False)
    assert server.proc is not None
    code = server.proc.wait(timeout=30)
    assert code != 0
    assert "--job-memory-mb 100 needs cgroups" in server.stderr_path.read_text()
