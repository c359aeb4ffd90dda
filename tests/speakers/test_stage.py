"""The speaker stage in a real `python -m pipeline` process, with the real models.

Only processes these tests start are signalled: the pipeline itself, or the stage's
child after checking it is the pipeline's own child.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from benchmarks.conversations import Conversation, read_rttm
from tests.helpers.audio import JFK
from tests.helpers.cli_proc import cli
from tests.helpers.pipeline_proc import lines_until, start_pipeline
from tests.helpers.procs import wait_until

pytestmark = pytest.mark.slow


def _finish(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, list[str]]:
    try:
        code = process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stdout is not None
    with process.stdout:
        return code, process.stdout.read().splitlines()


def _stage_pid(process: subprocess.Popen[str], lines: list[str]) -> int:
    """The stage child's pid from its log line, checked to be our pipeline's child."""
    line = next(x for x in lines if "[speakers] loading the voice model in process" in x)
    pid = int(line.rsplit(" ", 1)[1])
    assert pid in [c.pid for c in psutil.Process(process.pid).children()], "not our pipeline's child"
    return pid


def test_two_voices_are_found_and_labelled_word_by_word(tmp_path: Path, dialog: Conversation) -> None:
    out = tmp_path / "out"
    code, lines = _finish(start_pipeline(dialog.audio, "--out-dir", out, "--speakers", "auto"))
    assert code == 0, "\n".join(lines)
    assert any(x.startswith("[speakers] voice prints: 100%") for x in lines)
    assert any(x.startswith("[speakers] 2 speaker(s)") for x in lines)
    document = json.loads((out / "transcript.json").read_text())
    assert document["speakers"]["count"] == 2
    assert json.loads((out / "speakers.json").read_text())["labels"] == ["A", "B"]
    segments = document["segments"]
    assert segments[0]["speaker"] == "A" and {s["speaker"] for s in segments} == {"A", "B"}
    assert all(w["speaker"] == s["speaker"] for s in segments for w in s["words"])
    # Each reference turn's words mostly carry one label, and neighbouring turns differ.
    turns = read_rttm(dialog.rttm)
    mapping: dict[str, str] = {}
    right = total = 0
    for start, end, who in turns:
        labels = [
            w["speaker"] for s in segments for w in s["words"] if start <= (w["start"] + w["end"]) / 2 < end
        ]
        if labels:
            top = max(set(labels), key=labels.count)
            expected = mapping.setdefault(who, top)
            right += labels.count(expected)
            total += len(labels)
    assert len(set(mapping.values())) == 2 and right / total > 0.9, (mapping, right, total)
    text = (out / "transcript.txt").read_text().splitlines()
    assert text[0].startswith("A: ") and any(x.startswith("B: ") for x in text)
    assert "<v A>" in (out / "transcript.vtt").read_text()


@pytest.mark.skipif(not JFK.exists(), reason="../shared/audio/jfk.flac is not here")
def test_one_real_speaker_is_one_speaker(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, lines = _finish(start_pipeline(JFK, "--out-dir", out, "--speakers", "auto"))
    assert code == 0, "\n".join(lines)
    segments = json.loads((out / "transcript.json").read_text())["segments"]
    assert {s["speaker"] for s in segments} == {"A"}
    assert (out / "transcript.txt").read_text().startswith("A: And so my fellow Americans")


def test_a_crash_of_the_stage_fails_with_one_line_and_keeps_the_transcript(
    tmp_path: Path, dialog: Conversation
) -> None:
    out = tmp_path / "out"
    process = start_pipeline(dialog.audio, "--out-dir", out, "--speakers", "2")
    seen = lines_until(process, "[speakers] finding 2", timeout=240)
    psutil.Process(_stage_pid(process, seen)).send_signal(signal.SIGKILL)
    code, rest = _finish(process)
    assert code == 1, "\n".join(seen + rest)
    errors = [x for x in rest if x.startswith("error: ")]
    assert errors == [
        "error: speaker stage died (exit code -9); the transcript was written without speakers"
    ], rest
    assert not any("Traceback" in x for x in rest)
    document = json.loads((out / "transcript.json").read_text())
    assert document["segments"] and not any("speaker" in s for s in document["segments"])
    assert not (out / "transcript.txt").read_text().startswith("A: ")


def test_a_stop_during_the_stage_ends_the_job_and_its_children(tmp_path: Path, dialog: Conversation) -> None:
    out = tmp_path / "out"
    process = start_pipeline(dialog.audio, "--out-dir", out, "--speakers", "auto")
    seen = lines_until(process, "[speakers] finding", timeout=240)
    family = psutil.Process(process.pid).children(recursive=True)
    assert _stage_pid(process, seen) in [p.pid for p in family]
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code, rest = _finish(process, timeout=10)
    assert code == 143, rest
    assert time.monotonic() - sent < 2.0
    assert rest[-1].startswith("stopped by SIGTERM"), rest
    assert wait_until(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family), 5
    )


def test_without_word_times_segments_get_one_speaker_each(tmp_path: Path, dialog: Conversation) -> None:
    out = tmp_path / "out"
    code, lines = _finish(
        start_pipeline(dialog.audio, "--out-dir", out, "--speakers", "2", "--no-word-timestamps")
    )
    assert code == 0, "\n".join(lines)
    segments = json.loads((out / "transcript.json").read_text())["segments"]
    # Whole segments (they may span turns) carry the speaker of most of their time.
    assert all(s["speaker"] in ("A", "B") for s in segments) and not any(s["words"] for s in segments)
    assert segments[0]["speaker"] == "A"


def test_a_bad_speakers_value_is_refused_before_anything_runs(tmp_path: Path) -> None:
    code, lines = _finish(
        start_pipeline(tmp_path / "any.wav", "--out-dir", tmp_path / "out", "--speakers", "eleven")
    )
    assert code == 2 and "off, auto or a number 1-10" in "\n".join(lines)


def test_the_command_line_takes_speakers_too(tmp_path: Path, dialog: Conversation) -> None:
    out = tmp_path / "out"
    result = cli("transcribe", str(dialog.audio), "--out-dir", str(out), "--speakers", "2", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[speakers] 2 speaker(s)" in result.stdout
    assert (out / "transcript.txt").read_text().startswith("A: ")
