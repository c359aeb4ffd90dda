"""The real server as a separate process on loopback, for the out-of-process tests.

`ServerProcess` starts `python -m server`, waits for /api/health, talks HTTP with
http.client (so a test controls every header, the Host and chunked bodies included), and
stops the server with SIGTERM, checking it exits in time and leaves no descendant alive.

Nothing here signals a process it did not start: the only signals go to the server it
spawned, or to a pid the caller proves is a descendant of that server (`signal_descendant`).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.helpers.audio import REPO
from tests.helpers.env import clean_env
from tests.helpers.forms import Response, multipart
from tests.helpers.procs import alive, proc_key, proc_key_safe
from tests.helpers.waiting import wait_for

STOP_TIMEOUT = 10.0
GRACE = 1.0  # --disconnect-grace and --kill-grace unless a test passes its own
START_TIMEOUT = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One `python -m server` subprocess."""

    data_dir: Path
    args: Sequence[str] = ()
    host: str = "127.0.0.1"
    port: int = 0
    env: dict[str, str] | None = None
    token: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    # Every descendant ever seen, by (pid, create_time); a watcher thread adds to it.
    seen: dict[tuple[int, float], str] = field(default_factory=dict)
    _watch_stop: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None
    _run: int = 0

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()

    # -- life ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def stdout_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-server-{self.port}-{self._run}.out"

    @property
    def stderr_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-server-{self.port}-{self._run}.err"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "server",
            "--host", self.host,
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            "--disconnect-grace", str(GRACE),
            "--kill-grace", str(GRACE),
            "--heartbeat-interval", "0.5",
            "--metrics-interval", "0.5",
            "--disk-reserve-mb", "0",
            *self.args,
        ]  # fmt: skip

    def start(self, *, wait: bool = True) -> ServerProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._run += 1
        env = clean_env(**{**(self.env or {}), "PYTHONUNBUFFERED": "1"})
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.argv(), cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        self._watch_stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="descendant-watch", daemon=True)
        self._watcher.start()
        if wait:
            wait_for(self._healthy, START_TIMEOUT, f"the server on {self.url} to answer /api/health")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
        try:
            # 401: up, and guarded by a token this object was not told about.
            return self.request("GET", "/api/health", timeout=2).status in (200, 401)
        except OSError:
            return False

    def _watch(self) -> None:
        proc = self.proc
        assert proc is not None
        try:
            me = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not self._watch_stop.is_set():
            self.snapshot(me)
            self._watch_stop.wait(0.1)

    def snapshot(self, me: psutil.Process | None = None) -> list[psutil.Process]:
        """The server's live descendants now; each is remembered in `seen`."""
        try:
            me = me or psutil.Process(self.pid)
            children = me.children(recursive=True)
        except psutil.Error:
            return []
        for child in children:
            try:
                key = proc_key(child)
                if key not in self.seen:
                    self.seen[key] = " ".join(child.cmdline()[:6])
            except psutil.Error:
                continue
        return children

    def descendants(self) -> list[psutil.Process]:
        return [c for c in self.snapshot() if alive(proc_key_safe(c))]

    def wait_for_no_descendants(self, timeout: float) -> bool:
        """True once the server has no live descendant, False if one is left after timeout."""
        deadline = time.monotonic() + timeout
        while self.descendants():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def is_descendant(self, pid: int) -> bool:
        return any(c.pid == pid for c in self.snapshot())

    def signal_descendant(self, pid: int, sig: signal.Signals) -> None:
        """Signal `pid` only after checking it is this server's descendant right now."""
        assert self.is_descendant(pid), f"pid {pid} is not a descendant of server {self.pid}"
        os.kill(pid, sig)

    def sigkill(self) -> None:
        """SIGKILL the server (ours); its children are left to their lifelines."""
        assert self.proc is not None
        self.snapshot()
        self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT)
        self._stop_watching()

    def _stop_watching(self) -> None:
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    def stop(self) -> float:
        """SIGTERM; assert it exits within STOP_TIMEOUT and no descendant outlives it.

        Returns how long the stop took.
        """
        if self.proc is None:
            return 0.0
        self._stop_watching()
        if self.proc.poll() is not None:
            self._check_no_survivors(f"server {self.pid} (exited {self.proc.returncode})")
            return 0.0
        self.snapshot()
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise AssertionError(
                f"server did not exit within {STOP_TIMEOUT:g} s of SIGTERM:\n{self.output()[-3000:]}"
            ) from None
        took = time.monotonic() - began
        self._check_no_survivors(f"server {self.pid} stopped with SIGTERM")
        return took

    def _check_no_survivors(self, what: str) -> None:
        # Give the kernel a moment to finish killing what the server already signalled.
        deadline = time.monotonic() + 2.0
        survivors = [k for k in self.seen if alive(k)]
        while survivors and time.monotonic() < deadline:
            time.sleep(0.05)
            survivors = [k for k in survivors if alive(k)]
        assert not survivors, f"{what}; still alive: {[(k[0], self.seen[k]) for k in survivors]}"

    def output(self) -> str:
        text = ""
        for path in (self.stdout_path, self.stderr_path):
            try:
                text += path.read_text(errors="replace")
            except OSError:
                pass
        return text

    # -- measurements ----------------------------------------------------------------------

    def rss_mb(self) -> float:
        return float(psutil.Process(self.pid).memory_info().rss) / 2**20

    def num_fds(self) -> int:
        return int(psutil.Process(self.pid).num_fds())

    def client_connections(self) -> list[Any]:
        """The server's TCP connections other than its listening socket: a request that
        just ended holds one until the server reads the client's close."""
        connections = psutil.Process(self.pid).net_connections(kind="inet")
        return [c for c in connections if c.status != psutil.CONN_LISTEN]

    def zombies(self) -> list[int]:
        found = []
        for child in psutil.Process(self.pid).children(recursive=True):
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    found.append(child.pid)
            except psutil.Error:
                continue
        return found

    # -- HTTP -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30,
        auth: bool = True,
        chunked: bool = False,
    ) -> Response:
        headers = dict(headers or {})
        if auth and self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers, encode_chunked=chunked)
            response = conn.getresponse()
            data = response.read()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        response = self.request("GET", path)
        assert response.status == 200, (path, response.status, response.body[:300])
        return response.json()

    def text(self, path: str) -> str:
        response = self.request("GET", path)
        assert response.status == 200, (path, response.status, response.body[:300])
        return response.body.decode()

    def health(self) -> dict[str, Any]:
        return dict(self.get_json("/api/health"))

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.get_json(f"/api/jobs/{job_id}"))

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.get_json("/api/jobs")["jobs"])

    def post_upload(
        self,
        content: bytes | None,
        filename: str | None = "upload.wav",
        *,
        headers: dict[str, str] | None = None,
        chunked: bool = False,
        **fields: str,
    ) -> Response:
        body, content_type = multipart(fields, filename=filename, content=content)
        sent: bytes | list[bytes] = body
        if chunked:
            sent = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        return self.request(
            "POST",
            "/api/jobs",
            body=sent,
            headers={"Content-Type": content_type, **(headers or {})},
            chunked=chunked,
        )

    def upload(self, path: Path, **fields: str) -> dict[str, Any]:
        response = self.post_upload(path.read_bytes(), path.name, **fields)
        assert response.status == 201, (response.status, response.body[:500])
        return dict(response.json())

    def stop_job(self, job_id: int) -> Response:
        return self.request("POST", f"/api/jobs/{job_id}/stop")

    def wait_status(self, job_id: int, wanted: Iterable[str], timeout: float = 30) -> dict[str, Any]:
        wanted = set(wanted)

        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in wanted else None

        return dict(wait_for(reached, timeout, f"job {job_id} to be {sorted(wanted)}"))

    def wait_final(self, job_id: int, timeout: float = 30) -> dict[str, Any]:
        return self.wait_status(job_id, {"completed", "failed", "cancelled"}, timeout)

    def wait_running(self, job_id: int, timeout: float = 30) -> dict[str, Any]:
        def running() -> dict[str, Any] | None:
            job = self.job(job_id)
            assert job["status"] in ("queued", "running"), job
            return job if job["status"] == "running" and job["process_id"] else None

        return dict(wait_for(running, timeout, f"job {job_id} to run"))

    def log_lines(self, job_id: int, count: int = 50) -> list[str]:
        return list(self.get_json(f"/api/jobs/{job_id}/logs?lines={count}")["lines"])

    # -- events to wait on instead of sleeping (counts from /api/health) ---------------------

    def wait_orphan_passes(self, count: int, timeout: float = 30) -> None:
        """Wait for `count` more orphan passes to finish. A pass waits out the kill grace of
        whatever it signals, so after it, anything it wrongly signalled would show."""
        wanted = self.health()["orphan_passes"] + count
        wait_for(lambda: self.health()["orphan_passes"] >= wanted, timeout, f"{count} orphan passes")

    def wait_graces_expired(self, total: int, timeout: float = 30) -> None:
        """Wait until `total` disconnect graces have run out and been acted on."""
        wait_for(
            lambda: self.health()["graces_expired"] >= total, timeout, f"{total} disconnect graces to expire"
        )

    def wait_disconnects_settled(self, websockets: int, timeout: float = 30) -> dict[str, Any]:
        """Wait until only `websockets` sockets are open and no disconnect grace is pending
        (a socket is counted closed only after its leaving started any grace it causes)."""

        def settled() -> dict[str, Any] | None:
            health = self.health()
            return health if (health["websockets"], health["disconnect_timers"]) == (websockets, 0) else None

        return dict(wait_for(settled, timeout, f"{websockets} websockets and no pending grace"))


def stop_all(servers: Iterable[ServerProcess]) -> None:
    """Stop every server (the teardown of a `start_server` fixture); fail naming each one
    that was slow to stop or left a process alive, after trying them all."""
    failures = []
    for server in servers:
        try:
            server.stop()
        except AssertionError as error:
            failures.append(str(error))
    assert not failures, "\n".join(failures)
