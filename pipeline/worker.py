"""A worker process: load the model once, transcribe the windows it is handed.

Runs in a "spawn" child (see lifeline.py for why). It talks to the leader over one
duplex pipe: tasks come in, events go out (messages.py); it never prints. Plain pipes
rather than multiprocessing queues: queues hold semaphores that the resource tracker
complains about when a stopped run leaves them behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
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
    DecodeUtterance,
    Event,
    Exited,
    Failed,
    Loaded,
    NoMoreWork,
    SegmentFound,
    Transcribe,
    UseSettings,
    UtteranceText,
    WindowDone,
    WorkerWarning,
)
from pipeline.settings import Settings


class _Sender:
    """Sends to the leader; the replicas' threads share the pipe, one message at a time."""

    def __init__(self, leader: Connection) -> None:
        self._leader = leader
        self._lock = threading.Lock()

    def __call__(self, message: Event) -> None:
        with self._lock:
            self._leader.send(message)


class _ForwardWarnings(logging.Handler):
    """faster-whisper's warnings become leader log lines instead of stray stderr."""

    def __init__(self, send: _Sender, worker: int) -> None:
        super().__init__(level=logging.WARNING)
        self._send = send
        self._worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        self._send(WorkerWarning(self._worker, record.getMessage()))


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
    send = _Sender(leader)
    try:
        _serve(worker, settings, send, leader)
    except (EOFError, BrokenPipeError):
        return  # the leader is gone or done with us
    except Exception as error:
        send(Failed(worker, f"{type(error).__name__}: {error}"))
    send(Exited(worker, _peak_rss_bytes()))


def _serve(worker: int, settings: Settings, send: _Sender, leader: Connection) -> None:
    logging.getLogger("faster_whisper").addHandler(_ForwardWarnings(send, worker))
    logging.getLogger("faster_whisper").propagate = False
    began = time.monotonic()
    model = _load_model(worker, settings, send)
    from pipeline.decoding import use_given_speech

    use_given_speech()
    send(Loaded(worker, time.monotonic() - began))

    inbox: queue.Queue[Transcribe | None] = queue.Queue()
    threads: list[threading.Thread] = []
    while not isinstance(task := leader.recv(), NoMoreWork):  # EOFError: the leader left
        if isinstance(task, UseSettings):
            settings = task.settings
            continue
        if isinstance(task, DecodeUtterance):  # a live session's (pipeline/live.py)
            send(UtteranceText(worker, *decode_window(model, task)))
            continue
        if not threads:
            # One decoding thread per replica: CTranslate2 runs each on its own.
            threads = [
                threading.Thread(
                    target=_decode_windows,
                    args=(worker, model, settings, inbox, send),
                    name=f"replica-{n}",
                    daemon=True,
                )
                for n in range(max(1, settings.replicas))
            ]
            for thread in threads:
                thread.start()
        inbox.put(task)
    for _ in threads:
        inbox.put(None)
    for thread in threads:
        thread.join()


def _load_model(worker: int, settings: Settings, send: _Sender) -> Any:
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
        model_path = int8_model(model_path, lambda line: send(WorkerWarning(worker, line)))
    try:
        return WhisperModel(model_path, **load_options)
    except (RuntimeError, ValueError, OSError) as error:
        if model_path == settings.model_path:
            raise
        note = f"the int8 copy did not load ({error}); using the original"
        send(WorkerWarning(worker, note))
        discard(model_path)
        return WhisperModel(settings.model_path, **load_options)


def _decode_windows(
    worker: int, model: Any, settings: Settings, inbox: queue.Queue[Transcribe | None], send: _Sender
) -> None:
    """A replica's thread: decode windows from `inbox` until None."""
    from pipeline.decoding import Decoder

    decoder = Decoder(model, settings)
    while (task := inbox.get()) is not None:
        try:
            began = time.monotonic()
            segments, language = decoder.segments(task)
            for segment in segments:
                send(SegmentFound(worker, task.index, segment))
            send(WindowDone(worker, task.index, time.monotonic() - began, language))
        except Exception as error:
            with contextlib.suppress(OSError):  # the leader may be gone too
                send(Failed(worker, f"{type(error).__name__}: {error}"))
            return
