"""A worker process: load the model once, transcribe the chunks it is handed.

Runs in a "spawn" child (see lifeline.py for why). It talks to the leader over one
duplex pipe: tasks come in, events go out (messages.py); it never prints. Plain pipes
rather than multiprocessing queues: queues hold semaphores that the resource tracker
complains about when a stopped run leaves them behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from pipeline.lifeline import arm_parent_death_signal
from pipeline.live_decode import decode_window
from pipeline.messages import (
    ChunkDone,
    DecodeUtterance,
    Exited,
    Failed,
    Loaded,
    NoMoreWork,
    SegmentFound,
    Task,
    Transcribe,
    UseSettings,
    UtteranceText,
    WorkerWarning,
)
from pipeline.settings import Settings


class _ForwardWarnings(logging.Handler):
    """faster-whisper's warnings become leader log lines instead of stray stderr."""

    def __init__(self, leader: Connection, worker: int) -> None:
        super().__init__(level=logging.WARNING)
        self._leader = leader
        self._worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        self._leader.send(WorkerWarning(self._worker, record.getMessage()))


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load_key(settings: Settings) -> tuple[str, str, str, int, int]:
    """What a loaded worker is fixed to; any two settings with equal keys can share it."""
    s = settings
    return (s.model_path, s.device, s.effective_compute_type, s.threads, s.replicas)


@dataclass
class WarmWorker:
    """A worker started and loaded before its job was known (python -m pipeline --standby)."""

    process: Any  # multiprocessing's SpawnProcess
    connection: Connection
    settings: Settings  # what it loaded with
    load_seconds: float

    def fits(self, settings: Settings) -> bool:
        return load_key(settings) == load_key(self.settings)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.join(timeout=1.0)


def start_worker(context: Any, number: int, settings: Settings) -> tuple[Any, Connection]:
    """Start worker `number` of this leader: (its process, our end of its pipe)."""
    ours, theirs = context.Pipe(duplex=True)
    process = context.Process(
        target=run_worker,
        args=(number, os.getpid(), settings, theirs),
        name=f"pipeline-worker-{number}",
        daemon=True,
    )
    process.start()
    theirs.close()
    return process, ours


def run_worker(worker: int, leader_pid: int, settings: Settings, leader: Connection) -> None:
    """The worker's main: the target of a spawn-context Process."""
    arm_parent_death_signal(leader_pid)
    # Ctrl-C reaches the whole terminal group; the leader decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _serve(worker, settings, leader)
    except (EOFError, BrokenPipeError):
        return  # the leader is gone or done with us
    except Exception as error:
        leader.send(Failed(worker, f"{type(error).__name__}: {error}"))
    leader.send(Exited(worker, _peak_rss_bytes()))


def _serve(worker: int, settings: Settings, leader: Connection) -> None:
    logging.getLogger("faster_whisper").addHandler(_ForwardWarnings(leader, worker))
    logging.getLogger("faster_whisper").propagate = False
    began = time.monotonic()
    model = _load_model(worker, settings, leader)
    from pipeline.batching import make_pipeline

    batched = make_pipeline(model, settings.replicas) if settings.batched else None
    if settings.vad:
        from faster_whisper.vad import get_vad_model

        get_vad_model()  # made once per process; a standby makes it before its job
    leader.send(Loaded(worker, time.monotonic() - began))

    while True:
        task: Task = leader.recv()
        if isinstance(task, NoMoreWork):
            return
        if isinstance(task, UseSettings):
            settings = task.settings
            if settings.batched and batched is None:
                batched = make_pipeline(model, settings.replicas)
            continue
        if isinstance(task, DecodeUtterance):  # a live session's (pipeline/live.py)
            leader.send(UtteranceText(worker, *decode_window(model, task)))
            continue
        _transcribe(worker, settings, model, batched, task, leader)


def _load_model(worker: int, settings: Settings, leader: Connection) -> Any:
    """The WhisperModel, loaded from the int8 copy when one fits (see int8_copy.py)."""
    # tqdm (used by faster-whisper) would otherwise make a multiprocessing lock, a
    # semaphore the resource tracker reports as leaked when a stopped worker is killed.
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    from faster_whisper import WhisperModel

    from pipeline.int8_copy import discard, int8_model

    load_options = {
        "device": settings.device,
        "compute_type": settings.effective_compute_type,
        "cpu_threads": settings.threads,
        "num_workers": max(1, settings.replicas),
        # model_path is a resolved local folder; never let a load fetch anything.
        "local_files_only": True,
    }
    model_path = settings.model_path
    if settings.device == "cpu" and settings.effective_compute_type == "int8":
        model_path = int8_model(model_path, lambda line: leader.send(WorkerWarning(worker, line)))
    try:
        return WhisperModel(model_path, **load_options)
    except (RuntimeError, ValueError, OSError) as error:
        if model_path == settings.model_path:
            raise
        note = f"the int8 copy did not load ({error}); using the original"
        leader.send(WorkerWarning(worker, note))
        discard(model_path)
        return WhisperModel(settings.model_path, **load_options)


def _transcribe(
    worker: int, settings: Settings, model: Any, batched: Any, task: Transcribe, leader: Connection
) -> None:
    """Decode one chunk, sending each segment as it comes, then ChunkDone."""
    began = time.monotonic()
    options: dict[str, Any] = {
        "language": settings.language_code,
        "beam_size": settings.beam_size,
        # About 9% of decode time; only chunk merging and word outputs need them.
        "word_timestamps": bool(settings.word_timestamps),
        "initial_prompt": settings.initial_prompt,
    }
    if settings.temperature is not None:
        options["temperature"] = settings.temperature
    if settings.batched and batched is not None:
        segments, info = batched.transcribe(
            task.samples, batch_size=settings.batch_size, vad_filter=True, **options
        )
    else:
        segments, info = model.transcribe(task.samples, vad_filter=settings.vad, **options)
    for segment in segments:
        leader.send(SegmentFound(worker, task.index, _segment_dict(segment, task.offset)))
    leader.send(ChunkDone(worker, task.index, time.monotonic() - began, info.language))


def _segment_dict(segment: Any, offset: float) -> dict[str, Any]:
    """A faster-whisper segment as transcript.Segment.from_dict reads it, `offset` added."""
    words = [
        {"start": offset + w.start, "end": offset + w.end, "word": w.word, "probability": w.probability}
        for w in segment.words or ()
    ]
    return {
        "start": offset + segment.start,
        "end": offset + segment.end,
        "text": segment.text.strip(),
        "words": words,
        "seek": segment.seek,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }
