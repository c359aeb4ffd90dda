"""A real pipeline stopped mid-file (SIGTERM, or SIGKILL of its whole group) and run again
with --resume: every segment exactly once, in order, the same as an uninterrupted run's.
And the progress lines an uninterrupted run prints: steady, never far apart."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.protocol import Progress, parse_line
from pipeline.resume import Checkpoints
from tests.helpers.audio import JFK, REPO, repeated_speech
from tests.helpers.pipeline_proc import pipeline_env, run_pipeline

from .conftest import FIXTURE

pytestmark = pytest.mark.slow
Segments = list[dict[str, Any]]
Lines = list[tuple[float, str]]


def _start(audio: Path, out: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", str(audio), "--out-dir", str(out), "--formats", "json", *flags],
        cwd=REPO, env=pipeline_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _read_until(proc: subprocess.Popen[str], done: Callable[[str], bool]) -> list[tuple[float, str]]:
    """(arrival time, line) of each line until `done(line)` says so or output ends."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append((time.monotonic(), line.rstrip("\n")))
        if done(lines[-1][1]):
            break
    return lines


def _segments(out: Path) -> Segments:
    return list(json.loads((out / "transcript.json").read_text())["segments"])


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source, copies = (JFK, 20) if JFK.exists() else (FIXTURE, 30)  # about 4 minutes
    return repeated_speech(tmp_path_factory.mktemp("resume") / "long.wav", copies, 0.7, source)


@pytest.fixture(scope="module")
def whole(audio: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Segments, Lines]:
    """The uninterrupted run: its segments, and its lines as they arrived."""
    out = tmp_path_factory.mktemp("whole")
    with _start(audio, out) as proc:
        lines = _read_until(proc, lambda _: False)
        assert proc.wait(timeout=600) == 0, "\n".join(line for _, line in lines)
    return _segments(out), lines


def _assert_same(resumed: Segments, whole: Segments) -> None:
    # Each segment once and in order: the same texts as the uninterrupted run. Times may
    # differ by rounding (faster-whisper rounds within a window to 10 ms).
    assert [s["text"] for s in resumed] == [s["text"] for s in whole]
    for mine, theirs in zip(resumed, whole, strict=True):
        assert mine["start"] == pytest.approx(theirs["start"], abs=0.011)
        assert mine["end"] == pytest.approx(theirs["end"], abs=0.011)
    starts = [s["start"] for s in resumed]
    assert starts == sorted(starts)


def _resume(audio: Path, out: Path) -> str:
    done = run_pipeline(audio, "--out-dir", out, "--formats", "json", "--resume", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (out / "transcript.partial.json").exists(), "a complete run leaves no partial"
    return done.stdout


def test_stopped_with_sigterm_then_resumed(
    audio: Path, whole: tuple[Segments, Lines], tmp_path: Path
) -> None:
    finished = 0

    def two_windows_done(line: str) -> bool:
        nonlocal finished
        finished += line.startswith("window ") and " finished in " in line
        return finished >= 2

    with _start(audio, tmp_path) as proc:
        lines = _read_until(proc, two_windows_done)
        proc.send_signal(signal.SIGTERM)  # our own child
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM, lines
    partial = json.loads((tmp_path / "transcript.partial.json").read_text())
    assert partial["resume"]["at"] > 0
    kept = partial["segments"][: partial["resume"]["segments"]]
    assert kept and all(s["end"] <= partial["resume"]["at"] + 0.011 for s in kept)

    stdout = _resume(audio, tmp_path)
    assert f"resumed at {partial['resume']['at']:.2f} s" in stdout
    _assert_same(_segments(tmp_path), whole[0])


def test_killed_with_sigkill_then_resumed_from_the_last_checkpoint(
    audio: Path, whole: tuple[Segments, Lines], tmp_path: Path
) -> None:
    partial = tmp_path / "transcript.partial.json"

    def checkpoint_written(_: str) -> bool:
        try:
            return json.loads(partial.read_text())["resume"]["at"] > 0
        except (OSError, ValueError, KeyError):
            return False

    with _start(audio, tmp_path) as proc:
        lines = _read_until(proc, checkpoint_written)
        assert proc.poll() is None, "ended before its first checkpoint: " + repr(lines[-5:])
        os.killpg(proc.pid, signal.SIGKILL)  # the group we started: leader and workers
        proc.wait(timeout=30)
    at = json.loads(partial.read_text())["resume"]["at"]
    assert 0 < at < float(json.loads(partial.read_text())["duration"])

    _resume(audio, tmp_path)
    _assert_same(_segments(tmp_path), whole[0])


def test_progress_comes_steadily_to_the_end(whole: tuple[Segments, Lines]) -> None:
    _, lines = whole
    progress = [(at, event) for at, line in lines if isinstance(event := parse_line(line), Progress)]
    assert len(progress) >= 5
    times = [at for at, _ in progress]
    # A line at least every 2 s while working (the stall watchdog's food); 5 s of slack
    # for a loaded machine.
    assert max(b - a for a, b in itertools.pairwise(times)) <= 5.0
    done = [event.done_seconds for _, event in progress]
    assert done == sorted(done)
    assert done[-1] == pytest.approx(progress[-1][1].total_seconds)
    segments = [line for _, line in lines if line.startswith("[segment ")]
    # Segments come as windows finish, not all at the end.
    first_segment = next(at for at, line in lines if line.startswith("[segment "))
    last_progress = times[-1]
    assert len(segments) >= 4 and last_progress - first_segment > 0


def test_the_first_checkpoint_comes_with_the_first_segments(tmp_path: Path) -> None:
    # A run killed in its first seconds still keeps what it finished.
    checkpoints = Checkpoints(tmp_path)
    assert not checkpoints.due(0.0, 0)  # nothing final yet
    assert checkpoints.due(30.0, 4)
    checkpoints.write([], 30.0, {"duration": 60.0})
    assert not checkpoints.due(30.0, 4)  # nothing new
    assert not checkpoints.due(45.0, 6)  # new, but the next one waits a few seconds
