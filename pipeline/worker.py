"""A worker process: load the model once, transcribe the chunks it is handed.

Runs in a "spawn" child (see lifeline.py for why). Everything it has to say goes back to
the leader as small tuples on the event queue; it never prints.
"""

from __future__ import annotations

import logging
import resource
import signal
import time
from typing import Any

from pipeline.lifeline import arm_parent_death_signal
from pipeline.settings import Settings

# A task: (chunk index, chunk start in seconds, samples); None means no more work.
Task = tuple[int, float, Any] | None


class _ForwardWarnings(logging.Handler):
    """faster-whisper's warnings become leader log lines instead of stray stderr."""

    def __init__(self, events: Any, worker: int) -> None:
        super().__init__(level=logging.WARNING)
        self._events = events
        self._worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        self._events.put(("warning", self._worker, record.getMessage()))


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_worker(worker: int, leader: int, settings: Settings, tasks: Any, events: Any) -> None:
    """The worker's main: the target of a spawn-context Process."""
    arm_parent_death_signal(leader)
    # Ctrl-C reaches the whole terminal group; the leader decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _serve(worker, settings, tasks, events)
    except Exception as error:
        events.put(("failed", worker, f"{type(error).__name__}: {error}"))
    events.put(("exit", worker, _peak_rss_bytes()))


def _serve(worker: int, settings: Settings, tasks: Any, events: Any) -> None:
    logging.getLogger("faster_whisper").addHandler(_ForwardWarnings(events, worker))
    logging.getLogger("faster_whisper").propagate = False
    began = time.monotonic()
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    model = WhisperModel(
        settings.model_path,
        device=settings.device,
        compute_type=settings.effective_compute_type,
        cpu_threads=settings.threads,
        num_workers=1,
    )
    batched = BatchedInferencePipeline(model) if settings.batched else None
    events.put(("loaded", worker, time.monotonic() - began))

    while True:
        task: Task = tasks.get()
        if task is None:
            return
        index, offset, samples = task
        events.put(("started", worker, index))
        began = time.monotonic()
        options: dict[str, Any] = {
            "language": settings.language_code,
            "beam_size": settings.beam_size,
            "word_timestamps": True,
        }
        if batched is not None:
            segments, info = batched.transcribe(
                samples, batch_size=settings.batch_size, vad_filter=True, **options
            )
        else:
            segments, info = model.transcribe(samples, vad_filter=settings.vad, **options)
        for segment in segments:
            words = [
                {
                    "start": offset + w.start,
                    "end": offset + w.end,
                    "word": w.word,
                    "probability": w.probability,
                }
                for w in segment.words or ()
            ]
            data = {
                "start": offset + segment.start,
                "end": offset + segment.end,
                "text": segment.text.strip(),
                "words": words,
            }
            events.put(("segment", worker, index, data))
        events.put(("done", worker, index, time.monotonic() - began, info.language))
