"""The leader: start the workers, hand out chunks, merge and print results in order.

Workers are "spawn" processes (fork is unsafe once CTranslate2 has threads, forkserver
defeats PR_SET_PDEATHSIG). They load the model while the leader decodes the audio.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline import audio, protocol
from pipeline.formats import write_partial, write_transcript
from pipeline.merge import Merger
from pipeline.settings import Settings, chunk_length, fit_to_machine, usable_cores
from pipeline.transcript import Segment
from pipeline.worker import run_worker

Say = Callable[[str], None]
_POLL_SECONDS = 0.1


class Stopped(Exception):
    """Raised by a signal handler in the leader; carries the reason and the exit code."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


class WorkerFailed(RuntimeError):
    pass


@dataclass
class Run:
    """What the leader knows about a run; enough to write partial output when stopped."""

    settings: Settings
    duration: float = 0.0
    language: str | None = None
    started: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)
    workers: list[Any] = field(default_factory=list)
    worker_peaks: dict[int, int] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.workers if p.pid is not None]

    def meta(self) -> dict[str, Any]:
        s = self.settings
        return {
            "input": str(s.input),
            "language": self.language,
            "duration": round(self.duration, 3),
            "model": s.model,
            "model_path": s.model_path,
            "config": {
                "processes": s.processes,
                "threads": s.threads,
                "chunk_seconds": s.chunk_seconds,
                "overlap_seconds": s.overlap_seconds,
                "beam_size": s.beam_size,
                "batch_size": s.batch_size if s.batched else 0,
                "vad": s.vad,
                "device": s.device,
                "compute_type": s.effective_compute_type,
            },
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1_048_576:.0f} MB"


def _stop_workers(run: Run) -> None:
    for process in run.workers:
        with contextlib.suppress(Exception):
            process.kill()
    for process in run.workers:
        with contextlib.suppress(Exception):
            process.join(timeout=0.5)


def transcribe(settings: Settings, duration: float, say: Say, run: Run) -> list[Path]:
    """Transcribe settings.input (already probed: `duration` seconds); write the files.

    `run` is filled in as work progresses so the caller can write partial output if a
    Stopped exception interrupts. Raises audio.ProbeError for audio that fails to
    decode and WorkerFailed if a worker dies.
    """
    cores = usable_cores()
    settings = fit_to_machine(settings, cores)
    length = chunk_length(settings, duration)
    planned = audio.plan_chunks(duration, length, settings.overlap_seconds)
    settings = replace(settings, processes=min(settings.processes, len(planned)))
    run.settings = settings
    run.duration = duration
    for note in settings.warnings:
        say(f"warning: {note}")

    context = multiprocessing.get_context("spawn")
    tasks: Any = context.Queue()
    events: Any = context.Queue()
    # Never block exit on a task nobody will read (the workers may be gone).
    tasks.cancel_join_thread()
    mode = f"batched (batch size {settings.batch_size})" if settings.batched else "sequential"
    say(
        f"loading model {settings.model} ({settings.model_path}) on {settings.device}, "
        f"{settings.effective_compute_type}, {settings.processes} process(es) × "
        f"{settings.threads} thread(s), {mode} decoding"
    )
    load_began = time.monotonic()
    try:
        for number in range(1, settings.processes + 1):
            process = context.Process(
                target=run_worker,
                args=(number, multiprocessing.current_process().pid, settings, tasks, events),
                name=f"pipeline-worker-{number}",
                daemon=True,
            )
            process.start()
            run.workers.append(process)

        began = time.monotonic()
        samples = audio.decode(settings.input)
        run.timings["decode"] = time.monotonic() - began
        run.duration = duration = len(samples) / audio.SAMPLE_RATE
        chunks = audio.plan_chunks(duration, length, settings.overlap_seconds)
        say(f"decoded {duration:.1f} s of audio in {run.timings['decode']:.2f} s")
        for chunk in chunks:
            lo, hi = round(chunk.start * audio.SAMPLE_RATE), round(chunk.end * audio.SAMPLE_RATE)
            tasks.put((chunk.index, chunk.start, samples[lo:hi]))
        for _ in run.workers:
            tasks.put(None)
        del samples
        _collect(run, chunks, events, say, load_began)
    finally:
        _stop_workers(run)

    run.timings["wall"] = time.monotonic() - run.started
    meta = run.meta()
    out_dir = settings.out_dir
    written = write_transcript(out_dir, run.segments, meta, settings.formats)
    _summary(run, say)
    return written


def _collect(run: Run, chunks: list[audio.Chunk], events: Any, say: Say, load_began: float) -> None:
    """Receive worker events until every chunk is done; print segments and progress."""
    merger = Merger(chunks)
    total = run.duration
    lengths = sum(c.end - c.start for c in chunks) or 1.0
    done_in_chunk = [0.0] * len(chunks)
    chunk_began: dict[int, float] = {}
    loaded = 0
    transcribe_began = time.monotonic()

    def progress() -> None:
        done = min(total, sum(done_in_chunk) * total / lengths)
        say(protocol.format_progress(done, total))

    say(protocol.format_progress(0.0, total))
    while not merger.complete:
        try:
            event = events.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            for process in run.workers:
                if process.exitcode is not None and process.exitcode != 0:
                    raise WorkerFailed(
                        f"worker {process.name} died (exit code {process.exitcode})"
                    ) from None
            continue
        kind, worker = event[0], event[1]
        if kind == "loaded":
            loaded += 1
            seconds = event[2]
            run.timings.setdefault("model_load", seconds)
            run.timings["model_load"] = max(run.timings["model_load"], seconds)
            say(f"worker {worker}: model loaded in {seconds:.2f} s")
            if loaded == len(run.workers):
                run.timings["startup"] = time.monotonic() - load_began
                transcribe_began = time.monotonic()
        elif kind == "started":
            chunk = chunks[event[2]]
            chunk_began[chunk.index] = time.monotonic()
            say(
                f"chunk {chunk.index + 1}/{len(chunks)} "
                f"[{protocol.timestamp(chunk.start)} - {protocol.timestamp(chunk.end)}] "
                f"started on worker {worker}"
            )
        elif kind == "segment":
            index, data = event[2], event[3]
            segment = Segment.from_dict(data)
            merger.add(index, segment)
            done_in_chunk[index] = max(done_in_chunk[index], segment.end - chunks[index].start)
            _release(run, merger, say)
            progress()
        elif kind == "done":
            index, seconds, language = event[2], event[3], event[4]
            chunk = chunks[index]
            run.language = run.language or language
            length = chunk.end - chunk.start
            done_in_chunk[index] = length
            speed = length / seconds if seconds > 0 else float("inf")
            say(
                f"chunk {index + 1}/{len(chunks)} finished in {seconds:.2f} s "
                f"({speed:.1f}× real time)"
            )
            merger.finish(index)
            _release(run, merger, say)
            progress()
        elif kind == "warning":
            say(f"warning: worker {worker}: {event[2]}")
        elif kind == "failed":
            raise WorkerFailed(f"worker {worker} failed: {event[2]}")
        elif kind == "exit":
            run.worker_peaks[worker] = event[2]
    run.timings["transcribe"] = time.monotonic() - transcribe_began
    # The workers report their peak memory as they leave; wait briefly for it.
    deadline = time.monotonic() + 2.0
    while len(run.worker_peaks) < len(run.workers) and time.monotonic() < deadline:
        try:
            event = events.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            continue
        if event[0] == "exit":
            run.worker_peaks[event[1]] = event[2]


def _release(run: Run, merger: Merger, say: Say) -> None:
    for segment in merger.ready():
        run.segments.append(segment)
        say(protocol.format_segment(segment.start, segment.end, segment.text))


def leader_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _summary(run: Run, say: Say) -> None:
    wall = run.timings["wall"]
    rtf = wall / run.duration if run.duration > 0 else 0.0
    leader = leader_peak_bytes()
    peaks = [run.worker_peaks[k] for k in sorted(run.worker_peaks)]
    workers = " + ".join(_mb(p) for p in peaks) or "?"
    say(
        f"done: {run.duration:.1f} s of audio in {wall:.2f} s wall "
        f"(real-time factor {rtf:.3f}, {1 / rtf if rtf else 0:.1f}× real time); "
        f"peak memory {_mb(leader + sum(peaks))} (leader {_mb(leader)} + workers {workers})"
    )


def stop(run: Run, stopped: Stopped, say: Say) -> Path | None:
    """Kill the workers and keep what was finished as transcript.partial.json."""
    _stop_workers(run)
    run.timings["wall"] = time.monotonic() - run.started
    path = None
    with contextlib.suppress(OSError):
        path = write_partial(
            run.settings.out_dir, run.segments, {**run.meta(), "stopped": stopped.reason}
        )
    kept = f"kept {len(run.segments)} segment(s) in {path}" if path else "nothing kept"
    say(f"stopped by {stopped.reason} after {run.timings['wall']:.2f} s; {kept}")
    return path
