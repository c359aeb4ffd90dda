"""Browser tests: a real server in a subprocess, driven through headless Debian Chromium.

Playwright's sync API runs its own event loop, so these tests are plain (non-async)
functions and the server runs as a separate process, never inside pytest's loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.audio import REPO
from tests.helpers.server_proc import ServerProcess, stop_all

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

# In CI a missing browser is a failure, not a quiet skip (.ci/run installs chromium).
if os.environ.get("CI") and not CHROMIUM.exists():
    raise RuntimeError("CI is set but /usr/bin/chromium is missing: apt-get install chromium")
sync_api = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.exists():
    pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium", allow_module_level=True)


def token_of(args: list[str]) -> str | None:
    """The --token among a server's arguments: the API calls of the tests send it."""
    return args[args.index("--token") + 1] if "--token" in args else None


@pytest.fixture
def start_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., ServerProcess]]:
    """start_server(*extra_args) -> a running ServerProcess; all are stopped after the test,
    and a failing test's server logs are kept under test-artifacts/."""
    servers: list[ServerProcess] = []

    def start(*extra_args: str) -> ServerProcess:
        args = list(extra_args)
        server = ServerProcess(tmp_path / f"data{len(servers)}", args, token=token_of(args))
        servers.append(server)
        return server.start()

    yield start
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for i, server in enumerate(servers):
            (ARTIFACTS / f"{request.node.name}-server{i}.log").write_text(server.output())
    stop_all(servers)


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
