"""The leader: start the workers, hand out chunks, merge and print results in order.

Workers are "spawn" processes (fork is unsafe once CTranslate2 has threads, forkserver
defeats PR_SET_PDEATHSIG). They load the model while the leader decodes the audio.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import audio, messages, protocol
from pipeline.formats import write_partial, write_transcript
from pipeline.merge import Merger
from pipeline.settings import Settings, chunk_length, fit_to_machine, usable_cores
from pipeline.transcript import Segment
from pipeline.worker import WarmWorker, start_worker

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
    connections: dict[int, Connection] = field(default_factory=dict)
    worker_peaks: dict[int, int] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    merger: Merger | None = None
    warm: WarmWorker | None = None  # a worker loaded before the job (standby mode)
    preloaded: dict[int, float] = field(default_factory=dict)  # worker -> its load seconds
    speaker_stage: tuple[Any, Connection] | None = None  # the speakers child and its pipe
    speakers: dict[str, Any] = field(default_factory=dict)  # what the speaker stage found

    def worker_pids(self) -> list[int]:
        helper = [self.speaker_stage[0]] if self.speaker_stage else []
        return [p.pid for p in [*self.workers, *helper] if p.pid is not None]

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
                "replicas": s.replicas,
                "chunk_seconds": s.chunk_seconds,
                "overlap_seconds": s.overlap_seconds,
                "beam_size": s.beam_size,
                "batch_size": s.batch_size if s.batched else 0,
                "vad": s.vad,
                "word_timestamps": s.word_timestamps,
                "warm_start": bool(self.preloaded),
                "device": s.device,
                "compute_type": s.effective_compute_type,
            },
            **({"speakers": self.speakers} if self.speakers else {}),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "memory": {
                "leader_peak_mb": round(leader_peak_bytes() / 1_048_576, 1),
                "worker_peak_mb": [
                    round(self.worker_peaks[k] / 1_048_576, 1) for k in sorted(self.worker_peaks)
                ],
            },
        }


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 1_048_576:.0f} MiB"


def _stop_workers(run: Run) -> None:
    # Best effort on the way out: a pipe already closed (OSError) or a process object
    # already closed (ValueError) is fine; anything else is a bug and is raised.
    for connection in run.connections.values():
        with contextlib.suppress(OSError):
            connection.close()
    if run.speaker_stage:
        with contextlib.suppress(OSError):
            run.speaker_stage[1].close()
    processes = [*run.workers, *([run.speaker_stage[0]] if run.speaker_stage else [])]
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.kill()
    for process in processes:
        with contextlib.suppress(ValueError):
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
    words = settings.word_timestamps
    if words is None:
        # Merging overlapping chunks needs word times, and so does a speaker change mid-segment.
        words = len(planned) > 1 or settings.speakers != "off"
    settings = replace(
        settings, processes=min(settings.processes, len(planned)), word_timestamps=words
    )
    run.settings = settings
    run.duration = duration
    for note in settings.warnings:
        say(f"warning: {note}")

    context = multiprocessing.get_context("spawn")
    mode = f"batched (batch size {settings.batch_size})" if settings.batched else "sequential"
    say(
        f"loading model {settings.model} ({settings.model_path}) on {settings.device}, "
        f"{settings.effective_compute_type}, {settings.processes} process(es) × "
        f"{settings.threads} thread(s), {mode} decoding"
        + (f" on {settings.replicas} replicas" if settings.replicas > 1 else "")
    )
    load_began = time.monotonic()
    try:
        warm, run.warm = run.warm, None
        if warm is not None and not warm.fits(settings):
            say("warm worker does not fit this job's settings: starting cold")
            warm.discard()
            warm = None
        for number in range(1, settings.processes + 1):
            if number == 1 and warm is not None:
                # This job's decoding options from now on.
                warm.connection.send(messages.UseSettings(settings))
                process, ours = warm.process, warm.connection
                run.preloaded[number] = warm.load_seconds
            else:
                process, ours = start_worker(context, number, settings)
            run.workers.append(process)
            run.connections[number] = ours
        if settings.speakers != "off":
            from pipeline.speakers import stage

            # One thread: it runs beside the decoding workers (stage.hand).
            run.speaker_stage = stage.start(1)
            say(f"[speakers] loading the voice model in process {run.speaker_stage[0].pid}")

        began = time.monotonic()
        samples = audio.decode(settings.input)
        run.timings["decode"] = time.monotonic() - began
        run.duration = duration = len(samples) / audio.SAMPLE_RATE
        chunks = audio.plan_chunks(duration, length, settings.overlap_seconds)
        say(f"decoded {duration:.1f} s of audio in {run.timings['decode']:.2f} s")
        if run.speaker_stage:
            from pipeline.speakers import stage

            stage.hand(*run.speaker_stage, samples, settings.speakers, say)
        _collect(run, chunks, samples, say, load_began)
        if run.speaker_stage:
            _label_speakers(run, say)
    finally:
        _stop_workers(run)

    run.timings["wall"] = time.monotonic() - run.started
    meta = run.meta()
    out_dir = settings.out_dir
    written = write_transcript(out_dir, run.segments, meta, settings.formats)
    _summary(run, say)
    return written


def _collect(
    run: Run, chunks: list[audio.Chunk], samples: np.ndarray, say: Say, load_began: float
) -> None:
    """Hand chunks to idle workers and take their events until every chunk is done.

    Prints segments (merged, in time order) and progress as they come.
    """
    collector = _Collector(run, chunks, samples, say, load_began)
    collector.progress()
    for worker, seconds in run.preloaded.items():
        collector.on_loaded(worker, seconds, " before the job (warm start)")
    workers = dict(enumerate(run.workers, start=1))
    while not collector.merger.complete:
        by_connection = {id(c): n for n, c in run.connections.items()}
        ready = wait(list(run.connections.values()), timeout=_POLL_SECONDS)
        if not ready:
            # A dead worker's pipe reads as EOF, which `wait` reports; this catches a
            # worker that is gone while something else still holds its pipe open.
            for number, process in workers.items():
                gone = process.exitcode is not None and number in run.connections
                if gone and not run.connections[number].poll():
                    raise WorkerFailed(f"worker {number} died (exit code {process.exitcode})")
            continue
        for handle in ready:
            worker = by_connection[id(handle)]
            try:
                event: messages.Event = run.connections[worker].recv()
            except EOFError:
                code = workers[worker].exitcode
                raise WorkerFailed(f"worker {worker} died (exit code {code})") from None
            collector.on_event(event)
    run.timings["transcribe"] = time.monotonic() - collector.transcribe_began
    _await_exits(run)


class _Collector:
    """The leader's side of one run's chunks: who gets what, what is done, what to print."""

    def __init__(
        self, run: Run, chunks: list[audio.Chunk], samples: np.ndarray, say: Say, load_began: float
    ) -> None:
        self.run, self.chunks, self.samples, self.say = run, chunks, samples, say
        self.merger = run.merger = Merger(chunks)
        self.lengths = sum(c.end - c.start for c in chunks) or 1.0
        self.done_in_chunk = [0.0] * len(chunks)
        self.waiting = list(chunks)
        self.loaded = 0
        self.load_began = load_began
        self.transcribe_began = time.monotonic()
        self.shown = -1.0

    def progress(self) -> None:
        total = self.run.duration
        done = min(total, sum(self.done_in_chunk) * total / self.lengths)
        if done > self.shown:
            self.shown = done
            self.say(protocol.format_progress(done, total))

    def hand_out(self, worker: int) -> None:
        connection = self.run.connections[worker]
        if not self.waiting:
            connection.send(messages.NoMoreWork())
            return
        chunk = self.waiting.pop(0)
        self.say(
            f"chunk {chunk.index + 1}/{len(self.chunks)} "
            f"[{protocol.timestamp(chunk.start)} - {protocol.timestamp(chunk.end)}] "
            f"started on worker {worker}"
        )
        lo, hi = round(chunk.start * audio.SAMPLE_RATE), round(chunk.end * audio.SAMPLE_RATE)
        connection.send(messages.Transcribe(chunk.index, chunk.start, self.samples[lo:hi]))

    def on_loaded(self, worker: int, seconds: float, before: str = "") -> None:
        run = self.run
        self.loaded += 1
        run.timings["model_load"] = max(run.timings.get("model_load", 0.0), seconds)
        self.say(f"worker {worker}: model loaded in {seconds:.2f} s{before}")
        if self.loaded == len(run.workers):
            run.timings["startup"] = time.monotonic() - self.load_began
            self.transcribe_began = time.monotonic()
        self.hand_out(worker)

    def on_event(self, event: messages.Event) -> None:
        if isinstance(event, messages.Loaded):
            self.on_loaded(event.worker, event.seconds)
        elif isinstance(event, messages.SegmentFound):
            segment = Segment.from_dict(event.segment)
            self.merger.add(event.index, segment)
            chunk = self.chunks[event.index]
            reached = min(segment.end, chunk.end) - chunk.start
            self.done_in_chunk[event.index] = max(self.done_in_chunk[event.index], reached)
            _release(self.run, self.merger, self.say)
            self.progress()
        elif isinstance(event, messages.ChunkDone):
            self.on_chunk_done(event)
        elif isinstance(event, messages.WorkerWarning):
            self.say(f"warning: worker {event.worker}: {event.text}")
        elif isinstance(event, messages.Failed):
            raise WorkerFailed(f"worker {event.worker} failed: {event.error}")
        elif isinstance(event, messages.Exited):
            self.run.worker_peaks[event.worker] = event.peak_rss_bytes
            del self.run.connections[event.worker]

    def on_chunk_done(self, event: messages.ChunkDone) -> None:
        index, seconds = event.index, event.seconds
        chunk = self.chunks[index]
        self.run.language = self.run.language or event.language
        self.done_in_chunk[index] = chunk.end - chunk.start
        speed = self.done_in_chunk[index] / seconds if seconds > 0 else float("inf")
        self.say(
            f"chunk {index + 1}/{len(self.chunks)} finished in {seconds:.2f} s "
            f"({speed:.1f}× real time)"
        )
        self.merger.finish(index)
        _release(self.run, self.merger, self.say)
        self.progress()
        self.hand_out(event.worker)


def _await_exits(run: Run) -> None:
    """The workers report their peak memory as they leave; wait briefly for it."""
    deadline = time.monotonic() + 2.0
    while run.connections and time.monotonic() < deadline:
        for handle in wait(list(run.connections.values()), timeout=_POLL_SECONDS):
            worker = next(n for n, c in run.connections.items() if c is handle)
            try:
                event = run.connections[worker].recv()
            except EOFError:
                del run.connections[worker]
                continue
            if isinstance(event, messages.Exited):
                run.worker_peaks[worker] = event.peak_rss_bytes
                del run.connections[worker]


def _label_speakers(run: Run, say: Say) -> None:
    """The speaker stage's result on the segments (pipeline/speakers/stage.finish)."""
    from pipeline.speakers import stage

    assert run.speaker_stage is not None
    began = time.monotonic()
    run.segments, run.speakers = stage.finish(run.speaker_stage, run.segments, run.settings, run.meta(), say)
    run.timings["speakers"] = time.monotonic() - began


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
    workers = " + ".join(_mib(p) for p in peaks) or "?"
    if run.speakers:
        speakers = int(run.speakers["peak_mb"] * 1_048_576)
        peaks.append(speakers)
        workers += f" + speakers {_mib(speakers)}"
    say(
        f"done: {run.duration:.1f} s of audio in {wall:.2f} s wall "
        f"(real-time factor {rtf:.3f}, {1 / rtf if rtf else 0:.1f}× real time); "
        f"peak memory {_mib(leader + sum(peaks))} (leader {_mib(leader)} + workers {workers})"
    )


def stop(run: Run, stopped: Stopped, say: Say) -> Path | None:
    """Kill the workers and keep what was finished as transcript.partial.json."""
    _stop_workers(run)
    run.timings["wall"] = time.monotonic() - run.started
    path = None
    # Released segments, then finished ones still waiting for an earlier chunk.
    segments = run.segments + (run.merger.leftovers() if run.merger else [])
    with contextlib.suppress(OSError):
        path = write_partial(
            run.settings.out_dir, segments, {**run.meta(), "stopped": stopped.reason}
        )
    kept = f"kept {len(segments)} segment(s) in {path}" if path else "nothing kept"
    say(f"stopped by {stopped.reason} after {run.timings['wall']:.2f} s; {kept}")
    return path
