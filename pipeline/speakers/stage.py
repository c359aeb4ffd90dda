"""The speaker stage, leader side: a child process finds the voices, the leader puts
them on the words.

The child is a "spawn" process like the decoding workers: it is killed with them on a
stop or when the parent goes, it counts in the job's memory, and if it dies (a crash,
the memory cap) the leader raises StageFailed with one line saying so.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np

from pipeline.formats import SPEAKERS_FILE, write_atomic, write_transcript
from pipeline.settings import Settings, usable_cores
from pipeline.speakers.assign import label_segments
from pipeline.speakers.embed import Window
from pipeline.transcript import Segment

Say = Callable[[str], None]
_POLL_SECONDS = 0.2
_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class StageFailed(RuntimeError):
    pass


def start(threads: int) -> tuple[BaseProcess, Connection]:
    """Start the child; it loads its model while the leader transcribes."""
    from pipeline.speakers import child

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(
        target=child.main, args=(theirs, threads, os.getpid()), name="speakers", daemon=True
    )
    with _one_blas_thread():
        process.start()
    theirs.close()
    return process, ours


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """The child's numpy multiplies on one thread: OpenBLAS's own threads spin while they
    wait and would fight the decoding workers for the cores; the child adds threads its
    own way (VoicePrint.use_threads). Set only while the child starts, which reads it
    when it loads numpy; the leader's own numpy is loaded already."""
    saved = {name: os.environ.get(name) for name in _BLAS_THREADS}
    os.environ.update(dict.fromkeys(_BLAS_THREADS, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _receive(process: BaseProcess, connection: Connection) -> tuple[Any, ...]:
    while not connection.poll(_POLL_SECONDS):
        if process.exitcode is not None and not connection.poll():
            raise StageFailed(f"speaker stage died (exit code {process.exitcode})")
    try:
        event: tuple[Any, ...] = connection.recv()
    except (EOFError, OSError):
        process.join(timeout=1.0)
        raise StageFailed(f"speaker stage died (exit code {process.exitcode})") from None
    return event


def hand(process: BaseProcess, connection: Connection, samples: np.ndarray, speakers: str, say: Say) -> None:
    """Give the child the audio as soon as it is decoded: it finds the voices while the
    workers transcribe, filling the cores they leave idle (loading, single-threaded steps)."""
    count = None if speakers == "auto" else int(speakers)
    say(
        f"[speakers] finding {'how many speakers' if count is None else count} "
        f"in {len(samples) / 16000:.1f} s of audio"
    )
    # A child already dead cannot take it; collect() reports that, after the transcript.
    with contextlib.suppress(OSError):
        connection.send(("work", samples, count))


def all_cores(connection: Connection, threads: int) -> None:
    """Transcription is done: let the child use every core for what is left."""
    with contextlib.suppress(OSError):  # it may have finished and gone already
        connection.send(("threads", threads))


def collect(
    process: BaseProcess, connection: Connection, segments: Sequence[Segment], say: Say
) -> tuple[list[Segment], int, int]:
    """Wait for the child's voice groups and label `segments`; returns them, the count of
    speakers found and the child's peak memory in bytes."""
    began = time.monotonic()
    shown = -1
    while True:
        event = _receive(process, connection)
        kind = event[0]
        if kind == "progress":
            percent = int(event[1] * 100)
            if percent >= shown + 10 or percent == 100:
                shown = percent
                say(f"[speakers] {event[2]}: {percent}%")
        elif kind == "note":
            say(f"[speakers] {event[1]}")
        elif kind == "failed":
            raise StageFailed(f"speaker stage failed: {event[1]}")
        elif kind == "done":
            windows: list[Window] = event[1]
            groups: list[int] = event[2]
            peak: int = event[3]
            break
    labelled, found = label_segments(segments, windows, groups)
    say(
        f"[speakers] {found} speaker(s) in {len(labelled)} segment(s); waited "
        f"{time.monotonic() - began:.2f} s after transcription; peak memory {peak / 1_048_576:.0f} MiB"
    )
    return labelled, found, peak


def finish(
    handle: tuple[BaseProcess, Connection],
    segments: Sequence[Segment],
    settings: Settings,
    meta: dict[str, Any],
    say: Say,
) -> tuple[list[Segment], dict[str, Any]]:
    """After transcription: write the transcript without speakers (kept if the stage
    fails: StageFailed), let the child finish on every core, label the segments, and
    write speakers.json, which the server reads. Returns the segments and what was found."""
    write_transcript(settings.out_dir, segments, meta, settings.formats)
    all_cores(handle[1], usable_cores())
    labelled, found, peak = collect(*handle, segments, say)
    speakers = {"asked": settings.speakers, "count": found, "peak_mb": round(peak / 1_048_576, 1)}
    labels = sorted({s.speaker for s in labelled if s.speaker})
    write_atomic(settings.out_dir / SPEAKERS_FILE, json.dumps({**speakers, "labels": labels}) + "\n")
    return labelled, speakers
