"""CLI tests: a real server in a subprocess on loopback, and the CLI run as a subprocess.

Tests are plain functions: everything they talk to is another process, and they check
what a person would see (stdout, stderr, exit code).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.audio import REPO
from tests.helpers.env import clean_env
from tests.helpers.fake import fake_command_line
from tests.helpers.server_proc import free_port, multipart
from tests.helpers.server_proc import wait_for as wait_until

GRACE = 1.0  # --disconnect-grace and --kill-grace of every server started here
FINAL = ("completed", "failed", "cancelled")


@dataclass
class Server:
    """One `python -m server` subprocess on a free loopback port."""

    data_dir: Path
    extra_args: Sequence[str] = ()
    token: str | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"server-{self.port}.log"

    def start(self) -> Server:
        argv = [
            sys.executable, "-m", "server",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            "--disconnect-grace", str(GRACE),
            "--kill-grace", str(GRACE),
            "--heartbeat-interval", "0.5",
            "--metrics-interval", "0.2",
            "--max-concurrent-jobs", "4",
            "--disk-reserve-mb", "0",
            *self.extra_args,
        ]  # fmt: skip
        if self.token:
            argv += ["--token", self.token]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=clean_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        wait_until(self._healthy, 30, f"the server on {self.url} to answer /api/health")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
        try:
            with urllib.request.urlopen(self._request("/api/health"), timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # the server we started; it stops its own jobs
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _request(self, path: str, **kwargs: Any) -> urllib.request.Request:
        request = urllib.request.Request(self.url + path, **kwargs)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        return request

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self._request(path), timeout=10) as response:
            return json.loads(response.read())

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self._request(path), timeout=10) as response:
            return str(response.read().decode())

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.get(f"/api/jobs/{job_id}"))

    def upload(self, path: Path, **fields: str) -> dict[str, Any]:
        body, content_type = multipart(fields, filename=path.name, content=path.read_bytes())
        request = self._request("/api/jobs", data=body, method="POST", headers={"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201
            return dict(json.loads(response.read()))

    def wait_running(self, job_id: int, timeout: float = 20) -> dict[str, Any]:
        def running() -> dict[str, Any] | None:
            job = self.job(job_id)
            assert job["status"] in ("queued", "running"), job
            return job if job["status"] == "running" and job["process_id"] else None

        return dict(wait_until(running, timeout, f"job {job_id} to run"))

    def wait_final(self, job_id: int, timeout: float = 30) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in FINAL else None

        return dict(wait_until(final, timeout, f"job {job_id} to finish"))


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """start_server(*fake_pipeline_flags, token=None) -> a running Server on the fake
    pipeline; every server is stopped after the test."""
    servers: list[Server] = []

    def start(*fake_flags: str, token: str | None = None) -> Server:
        command = fake_command_line(*(fake_flags or ("--lines", "200", "--interval", "0.02")))
        server = Server(tmp_path / f"data{len(servers)}", ["--pipeline-command", command], token=token)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m server.cli ARGS` and return what it printed and its exit code."""
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=cwd or REPO,
        env=env if env is not None else clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[str]:
    """The CLI running in the background, its stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", *args],
        cwd=cwd or REPO,
        env=env if env is not None else clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
