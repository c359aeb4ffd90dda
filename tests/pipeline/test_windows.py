"""The reader: streamed VAD equal to a whole-file pass, windows cut where pieces end,
a resumed reader cutting the same windows, and memory that does not grow with the file."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio import SAMPLE_RATE, decode
from pipeline.settings import Settings
from pipeline.windows import PIECE_SECONDS, Reader, Sizer, Window, _speech_cut, vad_options
from tests.helpers.audio import JFK, REPO, repeated_speech
from tests.helpers.pipeline_proc import pipeline_env

from .conftest import FIXTURE


def _windows(audio: Path, skip: float = 0.0, ceiling: float = float("inf")) -> list[Window]:
    return list(Reader(Settings(audio, Path()), Sizer(ceiling=ceiling), skip, ahead=2).windows())


def _absolute(window: Window) -> list[tuple[int, int]]:
    at = round(window.start * SAMPLE_RATE)
    return [(at + s["start"], at + s["end"]) for s in window.speech or ()]


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = JFK if JFK.exists() else FIXTURE
    return repeated_speech(tmp_path_factory.mktemp("windows") / "speech.wav", 9, 0.7, source)


def test_windows_cover_the_file_and_match_a_whole_file_vad(speech_file: Path) -> None:
    from faster_whisper.vad import collect_chunks, get_speech_timestamps

    samples = decode(speech_file)
    windows = _windows(speech_file)
    assert len(windows) >= 3
    assert windows[0].start == 0.0
    for left, right in itertools.pairwise(windows):
        assert right.start == pytest.approx(left.end, abs=1e-9)
    assert windows[-1].end == pytest.approx(len(samples) / SAMPLE_RATE, abs=1e-6)

    # The same speech, to the sample, as faster-whisper's VAD over the whole file.
    whole = get_speech_timestamps(samples, vad_options())
    assert [p for w in windows for p in _absolute(w)] == [(s["start"], s["end"]) for s in whole]
    # And each window is one of the pieces faster-whisper groups that speech into.
    _, pieces = collect_chunks(samples, whole, max_duration=PIECE_SECONDS)
    assert [round(w.speech_seconds, 3) for w in windows] == [round(p["duration"], 3) for p in pieces]


def test_a_resumed_reader_cuts_the_windows_the_first_one_did(speech_file: Path) -> None:
    first = _windows(speech_file)
    resumed = _windows(speech_file, skip=first[2].start)
    assert [(w.start, w.end, _absolute(w)) for w in resumed] == [
        (w.start, w.end, _absolute(w)) for w in first[2:]
    ]


def test_cuts_wait_for_a_whole_piece_and_keep_off_the_undecided_end() -> None:
    second = SAMPLE_RATE
    speech = [{"start": n * 10 * second, "end": (n * 10 + 9) * second} for n in range(5)]
    length = 50 * second
    # Three 9 s segments make a 27 s piece; the fourth starts the next one, so the window
    # ends in the pause before it.
    assert _speech_cut(speech, length, PIECE_SECONDS, final=False) == 29 * second + second // 2
    # Not enough speech decided yet: read more (the last segment may still grow).
    assert _speech_cut(speech[:3], 30 * second, PIECE_SECONDS, final=False) is None
    # At the end of the file everything left is the window.
    assert _speech_cut(speech[:3], 30 * second, PIECE_SECONDS, final=True) == 30 * second
    # Silence so far: a window of it, short of the last two seconds.
    assert _speech_cut([], 20 * second, PIECE_SECONDS, final=False) == 18 * second


def _long_wav(path: Path, minutes: float) -> Path:
    """`minutes` of the fixture sentence, 4 s of silence after each, written as it goes."""
    sentence = decode(FIXTURE)
    pause = np.zeros(4 * SAMPLE_RATE, np.float32)
    unit = (np.clip(np.concatenate([sentence, pause]), -1, 1) * 32767).astype("<i2").tobytes()
    copies = int(minutes * 60 * SAMPLE_RATE / (len(sentence) + len(pause))) + 1
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        for _ in range(copies):
            out.writeframes(unit)
    return path


# Reads every window of a file, as the leader does, and reports the peak RSS.
_READ_ALL = """
import json, resource, sys
from pathlib import Path
from pipeline.settings import Settings
from pipeline.windows import Reader, Sizer
reader = Reader(Settings(Path(sys.argv[1]), Path()), Sizer(ceiling=float("inf")), 0.0, 2)
count = sum(1 for _ in reader.windows())
print(json.dumps({"windows": count, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


@pytest.mark.slow
def test_reading_a_long_file_needs_no_more_memory_than_a_short_one(tmp_path: Path) -> None:
    def peak_kib(minutes: float) -> dict[str, int]:
        audio = _long_wav(tmp_path / f"{minutes:g}.wav", minutes)
        done = subprocess.run(
            [sys.executable, "-c", _READ_ALL, str(audio)],
            cwd=REPO, env=pipeline_env(), capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    # From 10 minutes on the reader's memory is flat (below that, the allocator and
    # onnxruntime are still warming up: 2 minutes peaked at 150 MB, 10 at 180, 60 at 182).
    short, long = peak_kib(10), peak_kib(40)
    assert long["windows"] > 3 * short["windows"]
    # Decoding 40 minutes whole would hold 150 MiB of float32 samples more; run to run,
    # the peak moves by 20 MiB (when onnxruntime's and numpy's temporaries coincide).
    assert long["peak"] - short["peak"] <= 40 * 1024, (short, long)
