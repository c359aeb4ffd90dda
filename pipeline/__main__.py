"""`python -m pipeline INPUT --out-dir DIR`: transcribe one audio or video file.

Exit codes: 0 done; 1 internal failure (a worker died); 2 bad input, bad option or an
unusable model (one `error: ` line, no output files); 130 SIGINT; 143 SIGTERM (the
finished segments are kept in transcript.partial.json).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pipeline import settings as defaults
from pipeline.argtypes import number, whole_number
from pipeline.audio import ProbeError, probe
from pipeline.formats import FORMATS
from pipeline.settings import Settings
from pipeline.speakers.stage import StageFailed

if TYPE_CHECKING:
    from pipeline.standby import Standby

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format(s) {', '.join(unknown) or '(none)'}; choose from {','.join(FORMATS)}"
        )
    return names


def _speakers(text: str) -> str:
    from pipeline.speakers import parse_speakers

    try:
        return parse_speakers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Transcribe one audio or video file with faster-whisper. Writes "
        "transcript.{txt,srt,vtt,json} into --out-dir.",
        epilog="Exit codes: 0 done, 1 internal failure, 2 bad input or model, "
        "130 interrupted (SIGINT), 143 stopped (SIGTERM; finished segments are kept in "
        "transcript.partial.json).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("input", type=Path, help="audio or video file (anything PyAV can decode)")
    add("--out-dir", type=Path, required=True, help="directory for the transcript files")
    add(
        "--model",
        default=defaults.DEFAULT_MODEL,
        help="tiny.en (bundled, works offline), a faster-whisper model name (cached, or "
        "downloaded with --allow-download), or a CTranslate2 model folder written as a path "
        "(/, ~, ./ or ../)",
    )
    add(
        "--allow-download",
        action="store_true",
        help="download a --model name that is not cached (off: only the bundled and cached "
        "models load, nothing is fetched)",
    )
    add("--language", default="auto", help="'auto' to detect, or a language code such as en")
    add(
        "--processes",
        type=whole_number(1),
        default=1,
        help="worker processes, each loading the model once (capped at the core count)",
    )
    add(
        "--threads",
        type=whole_number(0),
        default=0,
        help="CPU threads per worker; 0 divides the cores among the workers "
        "(processes × threads is capped at the core count)",
    )
    add(
        "--replicas",
        type=whole_number(0),
        default=0,
        help="model replicas per worker that decode batches side by side (sharing the "
        "weights); 0: one per core of the worker when batching, else 1",
    )
    add(
        "--chunk-seconds",
        type=number(0),
        default=0.0,
        help="length of the pieces of audio handed to workers; 0 gives one piece per worker",
    )
    add(
        "--overlap-seconds",
        type=number(0),
        default=defaults.DEFAULT_OVERLAP_SECONDS,
        help="overlap between neighbouring pieces, merged by word timestamps",
    )
    add("--beam-size", type=whole_number(1), default=defaults.DEFAULT_BEAM_SIZE, help="beam width")
    add(
        "--batch-size",
        type=whole_number(0),
        default=defaults.DEFAULT_BATCH_SIZE,
        help="windows decoded together by faster-whisper's BatchedInferencePipeline; "
        "0 decodes sequentially",
    )
    add(
        "--vad",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="cut the audio at pauses with Silero VAD and skip silence (batching needs it; "
        "--no-vad decodes sequentially)",
    )
    add(
        "--formats",
        type=_formats,
        default=",".join(FORMATS),  # argparse runs string defaults through `type`
        help=f"comma-separated output formats out of {','.join(FORMATS)}",
    )
    add("--initial-prompt", default=None, help="text that conditions the first window (vocabulary, style)")
    add(
        "--temperature",
        type=number(0),
        default=None,
        help="sampling temperature; unset uses faster-whisper's fallback schedule 0.0-1.0",
    )
    add("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="where to run the model")
    add(
        "--compute-type",
        default="auto",
        help="CTranslate2 compute type (int8, float32, float16, ...); auto picks int8 on CPU",
    )
    add(
        "--word-timestamps",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compute word timestamps (in transcript.json); default: only when chunks "
        "must be merged by them (about 9%% of decoding time)",
    )
    add(
        "--speakers",
        type=_speakers,
        default="off",
        help="label who speaks: off, auto (count them) or a number 1-10 (needs the speakers extra)",
    )
    add(
        "--lifeline",
        action="store_true",
        help="stdin is a pipe from the parent: when it closes, the parent is gone and the "
        "program kills itself and its workers",
    )
    return parser


class _Printer:
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


def _fail(say: _Printer, message: str, code: int) -> int:
    say(f"error: {message}")
    return code


def main(argv: Sequence[str] | None = None, *, standby: Standby | None = None) -> int:
    """Run one transcription; with `standby`, the job a warm standby process was handed."""
    raw = list(sys.argv[1:] if argv is None else argv)
    if standby is None and raw[:1] == ["--standby"]:
        from pipeline.standby import serve

        return serve(raw[1:])
    args = build_parser().parse_args(raw)
    say = _Printer()
    began = time.monotonic()

    from pipeline import transcribe

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # One stop is enough: a second signal must not interrupt the clean-up.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        name = signal.Signals(signum).name
        raise transcribe.Stopped(name, 128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    settings = Settings(
        input=args.input,
        out_dir=args.out_dir,
        model=args.model,
        language=args.language,
        processes=args.processes,
        threads=args.threads,
        replicas=args.replicas,
        chunk_seconds=args.chunk_seconds,
        overlap_seconds=args.overlap_seconds,
        beam_size=args.beam_size,
        batch_size=args.batch_size,
        vad=args.vad,
        formats=args.formats,
        device=args.device,
        compute_type=args.compute_type,
        lifeline=args.lifeline,
        word_timestamps=args.word_timestamps,
        initial_prompt=args.initial_prompt or None,
        temperature=args.temperature,
        speakers=args.speakers,
    )
    run = transcribe.Run(settings, warm=standby.warm if standby else None)
    if settings.lifeline:
        from pipeline import lifeline

        def parent_gone() -> None:
            say("stopped: parent gone (stdin closed); killing workers")
            lifeline.kill_everything(run.worker_pids)

        if standby is not None:
            standby.on_eof = parent_gone  # its reader already watches stdin
        else:
            lifeline.watch_stdin(parent_gone)

    stage = "probe"
    try:
        try:
            duration = probe(settings.input)
        except ProbeError as error:
            return _fail(say, str(error), EXIT_BAD_INPUT)
        say(f"input {settings.input}: {duration:.2f} s of audio")
        stage = "model"
        from pipeline.models import ModelError, resolve_model

        try:
            model_path = resolve_model(settings.model, allow_download=args.allow_download)
        except ModelError as error:
            return _fail(say, str(error), EXIT_BAD_INPUT)
        if settings.device == "cuda" and not _cuda_available():
            return _fail(say, "--device cuda: no CUDA device found", EXIT_BAD_INPUT)
        run.settings = settings = _with_model(settings, model_path)
        if settings.speakers != "off":
            from pipeline.speakers import missing

            if reason := missing():
                return _fail(say, reason, EXIT_BAD_INPUT)
        stage = "transcribe"
        try:
            written = transcribe.transcribe(settings, duration, say, run)
        except ProbeError as error:
            return _fail(say, str(error), EXIT_BAD_INPUT)
        except transcribe.WorkerFailed as error:
            return _fail(say, str(error), EXIT_FAILED)
        except StageFailed as error:
            # The transcript without speakers was written before the stage ran.
            return _fail(say, f"{error}; the transcript was written without speakers", EXIT_FAILED)
        except OSError as error:
            return _fail(say, f"cannot write the transcript: {error}", EXIT_FAILED)
        say("wrote " + ", ".join(str(p) for p in written))
        return EXIT_OK
    except transcribe.Stopped as stopped:
        if stage == "transcribe":
            transcribe.stop(run, stopped, say)
        else:
            say(f"stopped by {stopped.reason} after {time.monotonic() - began:.2f} s")
        sys.stdout.flush()
        # Skip interpreter teardown (queue feeder threads, atexit joins): exit now.
        os._exit(stopped.exit_code)


def _with_model(settings: Settings, model_path: str) -> Settings:
    from dataclasses import replace

    return replace(settings, model_path=model_path)


def _cuda_available() -> bool:
    import ctranslate2

    return bool(ctranslate2.get_cuda_device_count())


if __name__ == "__main__":
    sys.exit(main())
