"""Real transcriptions through `python -m pipeline` with the bundled tiny.en model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.protocol import Progress, Segment, parse_line
from tests.helpers.audio import FIXTURE_SENTENCE, JFK, JFK_SENTENCE, repeated_speech
from tests.helpers.pipeline_proc import run_pipeline
from tests.helpers.wer import wer, words

from .conftest import FIXTURE


def _events(stdout: str) -> tuple[list[Progress], list[Segment]]:
    progress, segments = [], []
    for line in stdout.splitlines():
        event = parse_line(line)
        if isinstance(event, Progress):
            progress.append(event)
        elif isinstance(event, Segment):
            segments.append(event)
    return progress, segments


def test_transcribes_the_generated_speech(tmp_path: Path) -> None:
    done = run_pipeline(FIXTURE, "--out-dir", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["transcript.json", "transcript.srt", "transcript.txt", "transcript.vtt"]
    text = (tmp_path / "transcript.txt").read_text()
    heard = set(words(text))
    for word in "quick brown fox lazy dog bring red book kitchen table tomorrow morning".split():
        assert word in heard, text
    assert wer(FIXTURE_SENTENCE, text) <= 0.15

    document = json.loads((tmp_path / "transcript.json").read_text())
    assert document["language"] == "en"
    assert document["model"] == "tiny.en"
    assert document["duration"] == pytest.approx(7.2, abs=0.1)
    assert set(document["timings"]) >= {"first_segment", "model_load", "transcribe", "wall"}
    # Windows are cut in pauses and never merged: no word timestamps unless asked for.
    assert document["config"]["word_timestamps"] is False
    assert all(s["words"] == [] for s in document["segments"])

    progress, segments = _events(done.stdout)
    assert progress[-1].done_seconds == pytest.approx(progress[-1].total_seconds)
    assert [s.text for s in segments] == [s["text"] for s in document["segments"]]
    for line in ("model loaded in", "window 1 [", "finished in", "real-time factor", "peak memory"):
        assert line in done.stdout


def test_word_timestamps_when_asked(tmp_path: Path) -> None:
    done = run_pipeline(FIXTURE, "--out-dir", tmp_path, "--formats", "json", "--word-timestamps")
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads((tmp_path / "transcript.json").read_text())
    first_word = document["segments"][0]["words"][0]
    assert set(first_word) == {"start", "end", "word", "probability"}


@pytest.mark.skipif(not JFK.exists(), reason="../shared/audio/jfk.flac is not here")
def test_jfk_matches_its_sentence(tmp_path: Path) -> None:
    done = run_pipeline(JFK, "--out-dir", tmp_path, "--formats", "txt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert wer(JFK_SENTENCE, (tmp_path / "transcript.txt").read_text()) <= 0.10


@pytest.mark.slow
def test_one_piece_windows_on_two_workers_give_the_same_words(tmp_path: Path) -> None:
    # Windows end where faster-whisper's 30-second pieces end, so however they are cut
    # and whichever worker decodes them, the pieces and so the words stay the same.
    source, copies = (JFK, 7) if JFK.exists() else (FIXTURE, 10)
    audio = repeated_speech(tmp_path / "long.wav", copies=copies, source=source)  # 75-80 s
    whole = run_pipeline(audio, "--out-dir", tmp_path / "whole", "--formats", "json")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    chunked = run_pipeline(
        audio,
        *("--out-dir", tmp_path / "chunked", "--formats", "json"),
        *("--processes", "2", "--chunk-seconds", "8"),
    )
    assert chunked.returncode == 0, chunked.stdout + chunked.stderr
    assert "2 process(es)" in chunked.stdout

    def text(run: str) -> str:
        return str(json.loads((tmp_path / run / "transcript.json").read_text())["text"])

    assert chunked.stdout.count("started on worker") >= 3
    assert "started on worker 2" in chunked.stdout
    assert text("chunked") == text("whole")

    # On CPU a window is encoded alone by default; a batch of 8 gives the same words.
    batched = run_pipeline(audio, "--out-dir", tmp_path / "batched", "--formats", "json", "--batch-size", "8")
    assert batched.returncode == 0, batched.stdout + batched.stderr
    assert "batch size 1" in whole.stdout and "batch size 8" in batched.stdout
    assert text("batched") == text("whole")

    # Segments come out in time order with absolute timestamps.
    _, segments = _events(chunked.stdout)
    starts = [s.start for s in segments]
    assert starts == sorted(starts)
    assert segments[-1].end > 60
