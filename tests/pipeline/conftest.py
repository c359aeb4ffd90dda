"""Shared helpers for the pipeline tests: real `python -m pipeline` processes."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "speech.ogg"
FIXTURE_SENTENCE = (
    "The quick brown fox jumps over the lazy dog. "
    "Please bring the red book to the kitchen table tomorrow morning."
)
JFK = REPO.parent / "shared" / "audio" / "jfk.flac"
JFK_SENTENCE = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


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


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def repeated_speech(
    path: Path, copies: int, gap_seconds: float = 0.5, source: Path = FIXTURE
) -> Path:
    """`source` `copies` times with short silences between, as a 16 kHz WAV."""
    from pipeline.audio import SAMPLE_RATE, decode

    speech = decode(source)
    gap = np.zeros(int(gap_seconds * SAMPLE_RATE), dtype=np.float32)
    return write_wav(path, np.concatenate([np.concatenate([speech, gap])] * copies))


@pytest.fixture(scope="session")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 60 s of speech: long enough that a run is still busy when we act on it."""
    return repeated_speech(tmp_path_factory.mktemp("audio") / "long.wav", copies=8)
