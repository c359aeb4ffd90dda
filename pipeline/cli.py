"""One transcription from a command line: probe, resolve the model, transcribe, write.

Exit codes: 0 done; 1 internal failure (a worker died); 2 bad input, bad option or an
unusable model (one `error: ` line, no output files); 130 SIGINT; 143 SIGTERM (the
finished segments are kept in transcript.partial.json).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING

from pipeline.args import build_parser, settings_from
from pipeline.audio import ProbeError, probe
from pipeline.run import Run, Stopped, WorkerFailed
from pipeline.speakers.stage import StageFailed

if TYPE_CHECKING:
    from pipeline.settings import Settings
    from pipeline.standby import Standby

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class Printer:
    """Print each line at once; a vanished reader must not turn into a traceback."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self, line: str) -> None:
        if self.broken:
            return
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.broken = True
            # Point stdout at /dev/null so the interpreter's final flush stays quiet.
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), sys.stdout.fileno())


def _fail(say: Printer, message: str, code: int) -> int:
    say(f"error: {message}")
    return code


def main(argv: Sequence[str], *, standby: Standby | None = None) -> int:
    """Run one transcription; with `standby`, the job a warm standby process was handed."""
    if "--live" in argv:  # a live session, fed by the server's websocket (live.py)
        from pipeline import live

        return live.main(argv, standby=standby)
    args = build_parser().parse_args(list(argv))
    say = Printer()
    began = time.monotonic()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # One stop is enough: a second signal must not interrupt the clean-up.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        name = signal.Signals(signum).name
        raise Stopped(name, 128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    run = Run(settings_from(args), warm=standby.warm if standby else None)
    if run.settings.lifeline:
        _watch_lifeline(run, say, standby)
    stage: list[str] = ["probe"]  # how far it got, for the message when stopped
    try:
        return _run(run, say, stage, allow_download=args.allow_download, resume=args.resume)
    except Stopped as stopped:
        if stage[0] == "transcribe":
            from pipeline import transcribe

            transcribe.stop(run, stopped, say)
        else:
            say(f"stopped by {stopped.reason} after {time.monotonic() - began:.2f} s")
        sys.stdout.flush()
        # Skip interpreter teardown (queue feeder threads, atexit joins): exit now.
        os._exit(stopped.exit_code)


def _watch_lifeline(run: Run, say: Printer, standby: Standby | None) -> None:
    from pipeline import lifeline

    def parent_gone() -> None:
        say("stopped: parent gone (stdin closed); killing workers")
        lifeline.kill_everything(run.worker_pids)

    if standby is not None:
        standby.on_eof = parent_gone  # its reader already watches stdin
    else:
        lifeline.watch_stdin(parent_gone)


def _run(run: Run, say: Printer, stage: list[str], *, allow_download: bool, resume: bool) -> int:
    """Probe, resolve the model, transcribe; `stage[0]` follows along."""
    from pipeline import transcribe
    from pipeline.models import ModelError, resolve_model

    settings = run.settings
    try:
        duration = probe(settings.input)
    except ProbeError as error:
        return _fail(say, str(error), EXIT_BAD_INPUT)
    say(f"input {settings.input}: {duration:.2f} s of audio")
    stage[0] = "model"
    try:
        model_path = resolve_model(settings.model, allow_download=allow_download)
    except ModelError as error:
        return _fail(say, str(error), EXIT_BAD_INPUT)
    if settings.device == "cuda" and not _cuda_available():
        return _fail(say, "--device cuda: no CUDA device found", EXIT_BAD_INPUT)
    run.settings = settings = _with_model(settings, model_path)
    if settings.speakers != "off":
        from pipeline.speakers import missing

        if reason := missing():
            return _fail(say, reason, EXIT_BAD_INPUT)
    stage[0] = "transcribe"
    try:
        written = transcribe.transcribe(settings, duration, say, run, resume=resume)
    except ProbeError as error:
        return _fail(say, str(error), EXIT_BAD_INPUT)
    except WorkerFailed as error:
        return _fail(say, str(error), EXIT_FAILED)
    except StageFailed as error:
        # The transcript without speakers was written before the stage ran.
        return _fail(say, f"{error}; the transcript was written without speakers", EXIT_FAILED)
    except OSError as error:
        return _fail(say, f"cannot write the transcript: {error}", EXIT_FAILED)
    say("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK


def _with_model(settings: Settings, model_path: str) -> Settings:
    return replace(settings, model_path=model_path)


def _cuda_available() -> bool:
    import ctranslate2

    return bool(ctranslate2.get_cuda_device_count())
