"""`transcriptor jobs`, `logs` and `stop` against a real server running the fake pipeline."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

from tests.helpers.cli_proc import cli, start_cli
from tests.helpers.env import clean_env
from tests.helpers.procs import is_alive
from tests.helpers.server_proc import ServerProcess
from tests.helpers.waiting import wait_for

StartServer = Callable[..., ServerProcess]
SLOW_JOB = ("--lines", "1000", "--interval", "0.02")  # 20 s unless stopped


def test_jobs_table_json_and_stop(start_server: StartServer, tone: Path) -> None:
    server = start_server(*SLOW_JOB)
    done = server.upload(tone, on_disconnect="keep")
    server.wait_running(done["id"])
    assert cli("stop", str(done["id"]), "--server", server.url).returncode == 0
    job = server.upload(tone, on_disconnect="keep")
    job = wait_for(lambda: (j := server.job(job["id"]))["metrics"] and j, 20, "the job's first metrics")
    pid = job["process_id"]

    table = cli("jobs", "--server", server.url)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "FILE", "STATUS", "PROGRESS", "PID", "PROCESS", "CPU%", "MEMORY"]
    running = next(r.split() for r in rows if r.split()[0] == str(job["id"]))
    assert running[1:3] == ["tone.wav", "running"]
    assert running[3].endswith("%") and running[4] == str(pid) and running[5] == "running"
    float(running[6])
    assert running[8] == "MiB" and float(running[7]) > 0
    ended = next(r.split() for r in rows if r.split()[0] == str(done["id"]))
    assert ended[1:3] == ["tone.wav", "cancelled"] and ended[4:] == ["-", "-", "-", "-"]

    assert cli("ps", "--active", "--server", server.url).stdout.count("\n") == 2  # header + 1

    data = json.loads(cli("jobs", "--json", "--server", server.url).stdout)
    assert data["server"] == server.url
    by_id = {j["id"]: j for j in data["jobs"]}
    assert by_id[job["id"]]["status"] == "running"
    assert by_id[job["id"]]["process_id"] == pid
    assert 0 <= by_id[job["id"]]["progress"] <= 1
    assert by_id[job["id"]]["process"]["pid"] == pid
    assert by_id[job["id"]]["process"]["running"] is True
    assert by_id[done["id"]]["process"] is None

    stopped = cli("stop", str(job["id"]), "--server", server.url)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"job {job['id']} cancelled (stopped by user")
    assert server.job(job["id"])["status"] == "cancelled"
    assert wait_for(lambda: not is_alive(pid), 5, "the job's process to be gone")

    again = cli("stop", str(job["id"]), "--server", server.url)
    assert again.returncode == 1
    assert again.stderr == f"error: job {job['id']} already ended (cancelled)\n"


def test_logs_prints_the_last_lines(start_server: StartServer, tone: Path) -> None:
    server = start_server("--lines", "30", "--interval", "0")
    job = server.upload(tone)
    server.wait_final(job["id"])
    full = server.text(f"/api/jobs/{job['id']}/log").splitlines()
    result = cli("logs", str(job["id"]), "-n", "5", "--server", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == full[-5:]
    assert cli("logs", str(job["id"]), "--server", server.url).stdout.splitlines() == full[-20:]


def test_logs_follow_prints_every_line_in_order_and_exits_at_the_end(
    start_server: StartServer, tone: Path
) -> None:
    server = start_server("--lines", "200", "--interval", "0.02")
    job = server.upload(tone)
    result = cli("logs", str(job["id"]), "-f", "-n", "10000", "--server", server.url, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"job {job['id']} completed (exit code 0)\n"
    log = server.text(f"/api/jobs/{job['id']}/log")
    assert result.stdout == log
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("line ")] == [f"line {i} of 200" for i in range(1, 201)]
    assert lines[-1] == "done"


def test_logs_follow_a_finished_job_prints_the_last_lines_and_exits(
    start_server: StartServer, tone: Path
) -> None:
    server = start_server("--lines", "30", "--interval", "0")
    job = server.upload(tone)
    server.wait_final(job["id"])
    full = server.text(f"/api/jobs/{job['id']}/log").splitlines()
    result = cli("logs", str(job["id"]), "-f", "-n", "3", "--server", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == full[-3:]


def test_logs_follow_starts_with_the_last_lines_then_live_ones(start_server: StartServer, tone: Path) -> None:
    server = start_server("--lines", "300", "--interval", "0.01")
    job = server.upload(tone)
    wait_for(lambda: server.job(job["id"])["progress"] > 0.2, 20, "a fifth of the job")
    result = cli("logs", str(job["id"]), "-f", "-n", "4", "--server", server.url)
    assert result.returncode == 0, result.stderr
    log = server.text(f"/api/jobs/{job['id']}/log").splitlines()
    printed = result.stdout.splitlines()
    assert 4 < len(printed) < len(log) - 100
    assert printed == log[-len(printed) :]  # a tail of the log: no gap, no repeat, in order


def test_ctrl_c_detaches_and_a_kept_job_runs_on(start_server: StartServer, tone: Path) -> None:
    server = start_server(*SLOW_JOB)
    job = server.upload(tone, on_disconnect="keep")
    follower = start_cli("logs", str(job["id"]), "-f", "--server", server.url)
    assert follower.stdout is not None
    assert follower.stdout.readline().startswith(("line ", "[progress]", "[segment"))
    follower.send_signal(signal.SIGINT)  # our own CLI process, as Ctrl-C would
    _, stderr = follower.communicate(timeout=10)
    assert follower.returncode == 130
    assert f"detached from job {job['id']}" in stderr
    # The follower's disconnect grace ran out, and the server left the kept job running.
    wait_for(lambda: server.get_json("/api/health")["graces_expired"] == 1, 30, "the grace to run out")
    assert server.job(job["id"])["status"] == "running"
    assert cli("stop", str(job["id"]), "--server", server.url).returncode == 0


def test_server_down_is_exit_3_with_one_line(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"  # discard: nothing listens there
    for args in (["jobs"], ["logs", "1"], ["logs", "1", "-f"], ["stop", "1"]):
        result = cli(*args, "--server", url)
        assert result.returncode == 3, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith(f"error: cannot reach the transcriptor server at {url}")
        assert "transcriptor serve" in result.stderr


def test_server_from_the_environment(start_server: StartServer) -> None:
    server = start_server()
    result = cli("jobs", env=clean_env(TRANSCRIPTOR_SERVER=server.url))
    assert (result.returncode, result.stdout) == (0, "no jobs\n")


def test_unknown_job_is_exit_4(start_server: StartServer) -> None:
    server = start_server()
    for args in (["logs", "99"], ["logs", "99", "-f"], ["stop", "99"], ["logs", "99", "-n", "0"]):
        result = cli(*args, "--server", server.url)
        assert result.returncode == 4, (args, result.stderr)
        assert result.stderr == f"error: no job 99 on {server.url}\n"


def test_bad_arguments_are_exit_2() -> None:
    for args in (["logs", "abc"], ["logs", "1", "-n", "-3"], ["stop"], ["jobs", "--bogus"], []):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "usage: transcriptor" in result.stderr


def test_token(start_server: StartServer, tone: Path) -> None:
    server = start_server("--lines", "20", "--interval", "0", token="s3cret")
    for args in (["jobs"], ["logs", "1", "-f"], ["stop", "1"]):
        result = cli(*args, "--server", server.url)
        assert result.returncode == 5, (args, result.stderr)
        assert "pass --token" in result.stderr and result.stderr.count("\n") == 1
    wrong = cli("jobs", "--server", server.url, "--token", "nope")
    assert wrong.returncode == 5 and "refused the access token" in wrong.stderr

    job = server.upload(tone)
    server.wait_final(job["id"])
    assert cli("jobs", "--server", server.url, "--token", "s3cret").returncode == 0
    env = clean_env(TRANSCRIPTOR_SERVER=server.url, TRANSCRIPTOR_TOKEN="s3cret")
    followed = cli("logs", str(job["id"]), "-f", "-n", "2", env=env)
    assert (followed.returncode, followed.stdout) == (0, "[progress] 20.00/20.00 s (100.0%)\ndone\n")
