"""The command-line tool (`python -m server.cli`) run as a subprocess, as a person runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.audio import REPO
from tests.helpers.env import clean_env


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
