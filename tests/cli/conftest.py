"""CLI tests: a real server in a subprocess on loopback, and the CLI run as a subprocess.

Tests are plain functions: everything they talk to is another process, and they check
what a person would see (stdout, stderr, exit code).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.fake import fake_pipeline_args
from tests.helpers.server_proc import ServerProcess, stop_all

# What these tests were written against: metrics every 0.2 s, four jobs at once.
CLI_SERVER_ARGS = ("--metrics-interval", "0.2", "--max-concurrent-jobs", "4")


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """start_server(*fake_pipeline_flags, token=None) -> a running ServerProcess on the
    fake pipeline; every server is stopped after the test."""
    servers: list[ServerProcess] = []

    def start(*fake_flags: str, token: str | None = None) -> ServerProcess:
        args = [
            *CLI_SERVER_ARGS,
            *fake_pipeline_args(*(fake_flags or ("--lines", "200", "--interval", "0.02"))),
            *(["--token", token] if token else []),
        ]
        server = ServerProcess(tmp_path / f"data{len(servers)}", args, token=token)
        servers.append(server)
        return server.start()

    yield start
    stop_all(servers)
