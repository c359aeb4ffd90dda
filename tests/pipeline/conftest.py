"""Shared helpers for the pipeline tests: real `python -m pipeline` processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.audio import REPO, SPEECH_CLIP, repeated_speech

FIXTURE = SPEECH_CLIP


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


@pytest.fixture(scope="session")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 60 s of speech: long enough that a run is still busy when we act on it."""
    return repeated_speech(tmp_path_factory.mktemp("audio") / "long.wav", copies=8)
