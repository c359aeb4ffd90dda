"""Batches spread over model replicas: the same windows and words, decoded side by side."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from pipeline.batching import ReplicatedPipeline, even_batches, make_pipeline
from tests.helpers.audio import repeated_speech


@pytest.mark.parametrize(
    ("count", "batch_size", "replicas", "sizes"),
    [
        (11, 8, 2, [6, 5]),  # not 8 + 3: both replicas busy, and for the same time
        (20, 8, 2, [5, 5, 5, 5]),  # 3 batches would leave a replica idle for the last
        (16, 8, 2, [8, 8]),
        (1, 8, 2, [1]),  # one window: one batch, whatever the replicas
        (3, 8, 4, [1, 1, 1]),
        (5, 8, 1, [5]),
        (0, 8, 2, []),
    ],
)
def test_even_batches(count: int, batch_size: int, replicas: int, sizes: list[int]) -> None:
    batches = even_batches(count, batch_size, replicas)
    assert [len(b) for b in batches] == sizes
    assert [i for b in batches for i in b] == list(range(count))  # contiguous, in order
    assert all(len(b) <= batch_size for b in batches)


@pytest.fixture(scope="module")
def model() -> Any:
    from faster_whisper import WhisperModel

    from pipeline.models import resolve_model

    return WhisperModel(
        resolve_model("tiny.en"), device="cpu", compute_type="int8",
        cpu_threads=1, num_workers=2, local_files_only=True,
    )  # fmt: skip


def test_replicas_decode_side_by_side_with_the_same_words(model: Any, tmp_path: Path) -> None:
    from faster_whisper import BatchedInferencePipeline

    from pipeline.audio import decode

    samples = decode(repeated_speech(tmp_path / "long.wav", copies=12))  # 4 windows of ≤ 30 s
    options = {"batch_size": 2, "beam_size": 5, "language": "en"}
    plain, _ = BatchedInferencePipeline(model).transcribe(samples, **options)
    expected = [(s.start, s.end, s.text) for s in plain]

    replicated = ReplicatedPipeline(model, replicas=2)
    # Each batch waits here for another: decoding one after another would time out.
    together = threading.Barrier(2, timeout=60)
    threads: set[str] = set()
    forward = replicated.forward

    def forward_together(*args: Any) -> Any:
        threads.add(threading.current_thread().name)
        together.wait()
        return forward(*args)

    replicated.forward = forward_together  # type: ignore[method-assign]
    segments, _ = replicated.transcribe(samples, **options)
    got = [(s.start, s.end, s.text) for s in segments]
    assert len(threads) == 2, threads
    assert got == expected
    assert len({round(start // 30) for start, _, _ in got}) >= 3  # several windows, in order


def test_one_replica_is_the_plain_pipeline(model: Any) -> None:
    from faster_whisper import BatchedInferencePipeline

    assert type(make_pipeline(model, 1)) is BatchedInferencePipeline
    assert isinstance(make_pipeline(model, 2), ReplicatedPipeline)


def test_word_timestamps_align_side_by_side_with_the_plain_words(model: Any, tmp_path: Path) -> None:
    """Word alignment carries the last speech time from batch to batch: batches align
    side by side and that step runs in order, giving the plain pipeline's words."""
    from faster_whisper import BatchedInferencePipeline

    from pipeline.audio import decode

    samples = decode(repeated_speech(tmp_path / "long.wav", copies=12))
    options = {"batch_size": 2, "beam_size": 5, "language": "en", "word_timestamps": True}

    def words(segments: Any) -> list[tuple[float, float, str]]:
        return [(w.start, w.end, w.word) for s in segments for w in s.words]

    plain, _ = BatchedInferencePipeline(model).transcribe(samples, **options)
    expected = words(plain)
    replicated = ReplicatedPipeline(model, replicas=2)
    # Each batch's alignment waits here for another: aligning in order would time out.
    together = threading.Barrier(2, timeout=60)
    align = model.find_alignment

    def align_together(*args: Any) -> Any:
        together.wait()
        return align(*args)

    model.find_alignment = align_together
    try:
        segments, _ = replicated.transcribe(samples, **options)
    finally:
        del model.find_alignment  # the class's own again
    assert words(segments) == expected
