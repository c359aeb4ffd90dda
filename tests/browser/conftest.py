"""Browser tests: a real server in a subprocess, driven through headless Debian Chromium.

Playwright's sync API runs its own event loop, so these tests are plain (non-async)
functions and the server runs as a separate process, never inside pytest's loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.audio import REPO
from tests.helpers.env import clean_env
from tests.helpers.server_proc import free_port, multipart
from tests.helpers.server_proc import wait_for as wait_until

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
GRACE = 1.0  # --disconnect-grace and --kill-grace of every server started here

# In CI a missing browser is a failure, not a quiet skip (.ci/run installs chromium).
if os.environ.get("CI") and not CHROMIUM.exists():
    raise RuntimeError("CI is set but /usr/bin/chromium is missing: apt-get install chromium")
sync_api = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.exists():
    pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium", allow_module_level=True)


@dataclass
class Server:
    """One `python -m server` subprocess on a free loopback port."""

    data_dir: Path
    extra_args: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """What the API calls of the tests send: the bearer token when the server has one."""
        args = list(self.extra_args)
        if "--token" in args:
            return {"Authorization": f"Bearer {args[args.index('--token') + 1]}"}
        return {}

    def open(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.headers)
        request = urllib.request.Request(self.url + path, **kwargs)
        return urllib.request.urlopen(request, timeout=30)

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
            *self.extra_args,
        ]
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
            with self.open("/api/health") as response:
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

    # -- the JSON API, for set-up and for checking what the page claims ---------------------

    def get(self, path: str) -> Any:
        with self.open(path) as response:
            return json.loads(response.read())

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.get(f"/api/jobs/{job_id}"))

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.get("/api/jobs")["jobs"])

    def upload(self, path: Path, **fields: str) -> dict[str, Any]:
        body, content_type = multipart(fields, filename=path.name, content=path.read_bytes())
        with self.open(
            "/api/jobs", data=body, method="POST", headers={**self.headers, "Content-Type": content_type}
        ) as response:
            assert response.status == 201
            return dict(json.loads(response.read()))

    def wait_running(self, job_id: int, timeout: float = 20) -> dict[str, Any]:
        def running() -> dict[str, Any] | None:
            job = self.job(job_id)
            assert job["status"] in ("queued", "running"), job
            return job if job["status"] == "running" and job["process_id"] else None

        return dict(wait_until(running, timeout, f"job {job_id} to run"))

    def wait_final(self, job_id: int, timeout: float) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in ("completed", "failed", "cancelled") else None

        return dict(wait_until(final, timeout, f"job {job_id} to finish"))


@pytest.fixture
def start_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Server]]:
    """start_server(*extra_args) -> a running Server; all are stopped after the test, and
    a failing test's server logs are kept under test-artifacts/."""
    servers: list[Server] = []

    def start(*extra_args: str) -> Server:
        server = Server(tmp_path / f"data{len(servers)}", extra_args)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for i, server in enumerate(servers):
            target = ARTIFACTS / f"{request.node.name}-server{i}.log"
            target.write_bytes(server.log_path.read_bytes())


# Module scope, not session: while sync Playwright runs, its event loop is the running loop
# of the main thread, and pytest-asyncio cannot start the async tests of other modules.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def context(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (cookies, storage) at desktop size; a failing test's pages
    are saved as screenshots under test-artifacts/ with the browser console next to them."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    console: list[str] = []
    ctx.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    ctx.on("weberror", lambda e: console.append(f"pageerror: {e.error}"))
    yield ctx
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = request.node.name.replace("/", "_")
        for i, page in enumerate(ctx.pages):
            try:
                page.screenshot(path=str(ARTIFACTS / f"{name}-{i}.png"), full_page=True)
            except Exception as error:  # a closed or crashed page has nothing to show
                console.append(f"(no screenshot of page {i}: {error})")
        (ARTIFACTS / f"{name}-console.txt").write_text("\n".join(console))
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()

