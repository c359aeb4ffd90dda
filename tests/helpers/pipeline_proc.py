"""Real `python -m pipeline` processes for tests: run one to the end, or start one and
read its output until a line shows up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.audio import REPO


def pipeline_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never wait on the network for a model in tests.
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(REPO)
    return env


def run_pipeline(
    *args: str | Path, timeout: float = 120, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=cwd,
        env=pipeline_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_pipeline(*args: str | Path, stdin: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """The pipeline with stdout and stderr on one text pipe; the caller waits for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=REPO,
        env=pipeline_env(),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def lines_until(process: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    """The output lines (without newlines) up to the first that contains needle."""
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
        if needle in line:
            return seen
    raise AssertionError(f"no {needle!r} in output:\n" + "\n".join(seen))
