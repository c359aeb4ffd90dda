"""The leader: start the workers and the reader, collect the windows, write the files.

Workers are "spawn" processes (fork is unsafe once CTranslate2 has threads, forkserver
defeats PR_SET_PDEATHSIG). They load the model while the reader decodes the first
seconds of audio and cuts the first window (windows.py); collect.py hands windows out and
prints what comes back. The audio is never in memory whole: a 1-hour file needs about
what a 5-minute one does.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import wait
from pathlib import Path

from pipeline import messages
from pipeline.collect import Collector
from pipeline.formats import write_transcript
from pipeline.resume import Checkpoints, read_resume_point
from pipeline.run import Run, Stopped, WorkerFailed, leader_peak_bytes
from pipeline.settings import Settings, fit_to_machine, usable_cores
from pipeline.windows import Reader, Sizer
from pipeline.worker import start_worker

__all__ = ["Run", "Stopped", "WorkerFailed", "stop", "transcribe"]

Say = Callable[[str], None]
_POLL_SECONDS = 0.1
# Windows cut ahead of the workers' needs, waiting in the reader's queue.
_READ_AHEAD = 2


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


def transcribe(
    settings: Settings, duration: float, say: Say, run: Run, *, resume: bool = False
) -> list[Path]:
    """Transcribe settings.input (already probed: `duration` seconds); write the files.

    With `resume`, start where transcript.partial.json in the output folder left off.
    `run` is filled in as work progresses so the caller can write partial output if a
    Stopped exception interrupts. Raises audio.ProbeError for audio that fails to
    decode and WorkerFailed if a worker dies.
    """
    settings = fit_to_machine(settings, usable_cores())
    # Windows are cut in pauses and never merged: word times only when asked for, or for
    # the speaker stage (a speaker may change mid-segment).
    words = settings.word_timestamps
    if words is None:
        words = settings.speakers != "off"
    settings = replace(settings, word_timestamps=words)
    run.settings = settings
    run.duration = duration
    for note in settings.warnings:
        say(f"warning: {note}")
    if resume:
        point, line = read_resume_point(settings.out_dir, duration)
        say(line)
        if point is not None:
            run.segments = list(point.segments)
            run.released_until = run.resumed_from = point.at
    mode = f"batched (batch size {settings.batch_size})" if settings.batched else "sequential"
    say(
        f"loading model {settings.model} ({settings.model_path}) on {settings.device}, "
        f"{settings.effective_compute_type}, {settings.processes} process(es) × "
        f"{settings.threads} thread(s), {mode} decoding"
        + (f" on {settings.replicas} replicas" if settings.replicas > 1 else "")
    )
    load_began = time.monotonic()
    try:
        _start_workers(run, settings, say)
        if settings.speakers != "off":
            _start_speakers(run, say)
        sizer = Sizer(ceiling=settings.chunk_seconds or float("inf"))
        reader = Reader(settings, sizer, run.released_until, _READ_AHEAD)
        reader.start()
        Collector(run, reader, sizer, say, load_began).loop()
        for connection in run.connections.values():
            connection.send(messages.NoMoreWork())
        _await_exits(run)
        if run.speaker_stage:
            _label_speakers(run, say)
    finally:
        _stop_workers(run)

    run.timings["wall"] = time.monotonic() - run.started
    written = write_transcript(settings.out_dir, run.segments, run.meta(), settings.formats)
    Checkpoints(settings.out_dir).remove()
    _summary(run, say)
    return written


def _start_workers(run: Run, settings: Settings, say: Say) -> None:
    context = multiprocessing.get_context("spawn")
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


def _start_speakers(run: Run, say: Say) -> None:
    """The speaker stage finds the voices in the whole file, beside the decoding workers.

    It needs the whole audio at once (pipeline/speakers), so with --speakers the file is
    decoded whole here too, handed over, and let go: memory then grows with the file."""
    from pipeline import audio
    from pipeline.speakers import stage

    # One thread: it runs beside the decoding workers (stage.hand).
    run.speaker_stage = stage.start(1)
    say(f"[speakers] loading the voice model in process {run.speaker_stage[0].pid}")
    samples = audio.decode(run.settings.input)
    stage.hand(*run.speaker_stage, samples, run.settings.speakers, say)


def _label_speakers(run: Run, say: Say) -> None:
    """The speaker stage's result on the segments (pipeline/speakers/stage.finish)."""
    from pipeline.speakers import stage

    assert run.speaker_stage is not None
    began = time.monotonic()
    run.segments, run.speakers = stage.finish(run.speaker_stage, run.segments, run.settings, run.meta(), say)
    run.timings["speakers"] = time.monotonic() - began


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
    with contextlib.suppress(OSError):
        meta = {**run.meta(), "stopped": stopped.reason}
        path = Checkpoints(run.settings.out_dir).write(run.segments, run.released_until, meta)
    kept = f"kept {len(run.segments)} segment(s) in {path}" if path else "nothing kept"
    say(f"stopped by {stopped.reason} after {run.timings['wall']:.2f} s; {kept}")
    return path
