"""The command itself: the console script, --help everywhere, and `transcriptor serve`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.audio import REPO
from tests.helpers.cli_proc import cli
from tests.helpers.env import clean_env
from tests.helpers.server_proc import free_port
from tests.helpers.waiting import wait_for

COMMANDS = [
    ["serve"], ["transcribe"], ["jobs"], ["ps"], ["logs"], ["stop"], ["cleanup"],
    ["db"], ["db", "backup"], ["db", "migrate"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    name = "jobs" if command == ["ps"] else " ".join(command)
    assert result.stdout.startswith(f"usage: transcriptor {name}")


def test_top_level_help_lists_every_command_and_the_exit_codes() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for name in ("serve", "transcribe", "jobs (ps)", "logs", "stop", "cleanup", "db"):
        assert name in result.stdout
    assert "3 server not reachable" in result.stdout


def test_logs_help_warns_that_following_counts_as_a_viewer() -> None:
    text = " ".join(cli("logs", "--help").stdout.split())
    assert "on_disconnect=cancel" in text and "counts as a viewer" not in text
    assert "this command is a viewer of the job" in text


def test_serve_has_the_servers_flags() -> None:
    serve = cli("serve", "--help").stdout
    direct = subprocess.run(
        [sys.executable, "-m", "server", "--help"], capture_output=True, text=True, check=True
    ).stdout
    flags = {word for word in direct.split() if word.startswith("--")}
    assert flags <= {word for word in serve.split() if word.startswith("--")}


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "transcriptor"
    found = script if script.exists() else shutil.which("transcriptor")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but the console script is missing (make test runs pip install -e .)")
        pytest.skip("the console script is not installed (pip install -e .)")
    result = subprocess.run([str(found), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("transcriptor ")


def test_serve_runs_the_server(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port),
         "--data-dir", str(tmp_path / "data"), "--disk-reserve-mb", "0"],
        cwd=REPO, env=clean_env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"transcriptor serving {tmp_path / 'data'} at http://127.0.0.1:{port}/")

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_for(healthy, 20, "the server to answer")
        listed = cli("jobs", "--server", f"127.0.0.1:{port}")
        assert (listed.returncode, listed.stdout) == (0, "no jobs\n")
    finally:
        proc.terminate()  # the server this test started
        proc.communicate(timeout=15)
    assert (tmp_path / "data" / "transcriptor.db").is_file()
