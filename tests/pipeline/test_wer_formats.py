"""The WER helper and the transcript writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.formats import to_srt, to_vtt, write_transcript
from pipeline.transcript import Segment, Word
from tests.helpers.wer import wer


def test_wer_ignores_case_and_punctuation() -> None:
    assert wer("And so, my fellow Americans.", "and so my fellow americans") == 0.0


def test_wer_counts_edits_per_reference_word() -> None:
    assert wer("a b c d", "a x c") == pytest.approx(0.5)


SEGMENTS = [
    Segment(0.0, 1.5, "Hello there.", (Word(0.0, 0.7, " Hello"), Word(0.8, 1.5, " there."))),
    Segment(3661.25, 3662.0, "Bye.", (Word(3661.25, 3662.0, " Bye."),)),
]


def test_srt_and_vtt_timestamps() -> None:
    assert "2\n01:01:01,250 --> 01:01:02,000\nBye.\n" in to_srt(SEGMENTS)
    vtt = to_vtt(SEGMENTS)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n")


def test_files_are_written_whole_and_nothing_else_is_left(tmp_path: Path) -> None:
    meta = {"language": "en", "duration": 3662.0, "model": "tiny.en", "timings": {}}
    written = write_transcript(tmp_path, SEGMENTS, meta, ("txt", "srt", "vtt", "json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    assert (tmp_path / "transcript.txt").read_text() == "Hello there.\nBye.\n"
    document = json.loads((tmp_path / "transcript.json").read_text())
    assert document["language"] == "en"
    assert document["segments"][0]["words"][1] == {
        "start": 0.8,
        "end": 1.5,
        "word": " there.",
        "probability": 1.0,
    }
