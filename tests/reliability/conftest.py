"""Fixtures for the fault, load and bad-input suite: real servers on 127.0.0.1.

Every server a test starts is stopped at the end with SIGTERM; the teardown fails the test
if it takes more than 10 s or leaves any process it ever started alive.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.audio import REPO
from tests.helpers.fake import fake_pipeline_args
from tests.helpers.server_proc import ServerProcess, stop_all

PIPELINE_BY_MODEL = Path(__file__).resolve().parent / "pipeline_by_model.py"
RESULTS_PATH = REPO / "test-artifacts" / "reliability-results.json"
_results: dict[str, dict[str, Any]] = {}
_results_lock = threading.Lock()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """start_server(*args, fake=(flags...), data_dir=..., host=..., env=..., token=..., wait=True).

    `fake` runs tests/fixtures/fake_pipeline.py with those flags; without it the real
    pipeline runs. The same data_dir may be passed again to restart on it.
    """
    servers: list[ServerProcess] = []

    def start(
        *args: str,
        fake: tuple[str, ...] | list[str] | None = None,
        data_dir: Path | None = None,
        wait: bool = True,
        **options: Any,
    ) -> ServerProcess:
        argv = [*args, *(fake_pipeline_args(*fake) if fake is not None else [])]
        server = ServerProcess(data_dir or tmp_path / f"data{len(servers)}", argv, **options)
        servers.append(server)
        return server.start(wait=wait)

    yield start
    stop_all(servers)


@pytest.fixture
def behaviours(tmp_path: Path) -> Callable[..., list[str]]:
    """behaviours(name=[fake flags], ...) -> server args where an upload's `model` picks one."""

    def make(**by_model: list[str]) -> list[str]:
        path = tmp_path / "behaviours.json"
        path.write_text(json.dumps(by_model))
        command = [sys.executable, str(PIPELINE_BY_MODEL), str(path)]
        return ["--pipeline-command", shlex.join(command)]

    return make


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """record(key=value, ...): measurements of this test, saved for docs/reliability.md."""

    def add(**values: Any) -> None:
        with _results_lock:
            _results.setdefault(request.node.name, {}).update(values)

    return add


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _results:
        return
    RESULTS_PATH.parent.mkdir(exist_ok=True)
    previous: dict[str, Any] = {}
    if RESULTS_PATH.exists():
        try:
            previous = json.loads(RESULTS_PATH.read_text())
        except ValueError:
            previous = {}
    previous.update(_results)
    RESULTS_PATH.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")
