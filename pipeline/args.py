"""The pipeline's command line: its parser, and the Settings a parsed line gives.

The server's `transcriptor transcribe` builds on this parser (server/cli/transcribe.py),
and the server checks job options against it, so it lives here rather than in
__main__, which only dispatches.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import settings as defaults
from pipeline.argtypes import number, whole_number
from pipeline.formats import FORMATS
from pipeline.settings import Settings


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
    parser.add_argument("input", type=Path, help="audio or video file (anything PyAV can decode)")
    parser.add_argument("--out-dir", type=Path, required=True, help="directory for the transcript files")
    _model_options(parser)
    _work_options(parser)
    _decoding_options(parser)
    _output_options(parser)
    return parser


def _model_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
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
    add("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="where to run the model")
    add(
        "--compute-type",
        default="auto",
        help="CTranslate2 compute type (int8, float32, float16, ...); auto picks int8 on CPU",
    )


def _work_options(parser: argparse.ArgumentParser) -> None:
    """How the work is spread: processes, threads, replicas, chunks."""
    add = parser.add_argument
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
        help="the most speech (in seconds) one window handed to a worker holds; 0: small "
        "windows first, growing with the decoding speed",
    )
    add(
        "--overlap-seconds",
        type=number(0),
        default=defaults.DEFAULT_OVERLAP_SECONDS,
        help="no longer used: windows are cut in pauses and need no overlap (accepted so "
        "older command lines still run)",
    )


def _decoding_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--language", default="auto", help="'auto' to detect, or a language code such as en")
    add("--beam-size", type=whole_number(1), default=defaults.DEFAULT_BEAM_SIZE, help="beam width")
    add(
        "--batch-size",
        type=whole_number(0),
        default=None,
        help="30-second pieces encoded together by faster-whisper's "
        "BatchedInferencePipeline; 0 decodes sequentially; default: "
        f"{defaults.DEFAULT_BATCH_SIZE} with --device cuda, {defaults.CPU_BATCH_SIZE} on CPU",
    )
    add(
        "--vad",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="cut the audio at pauses with Silero VAD and skip silence (batching needs it; "
        "--no-vad decodes sequentially)",
    )
    add("--initial-prompt", default=None, help="text that conditions the first window (vocabulary, style)")
    add(
        "--temperature",
        type=number(0),
        default=None,
        help="sampling temperature; unset uses faster-whisper's fallback schedule 0.0-1.0",
    )


def _output_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--formats",
        type=_formats,
        default=",".join(FORMATS),  # argparse runs string defaults through `type`
        help=f"comma-separated output formats out of {','.join(FORMATS)}",
    )
    add(
        "--word-timestamps",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compute word timestamps (in transcript.json); default: only when chunks "
        "must be merged by them (about 9%% of decoding time)",
    )
    add(
        "--resume",
        action="store_true",
        help="continue from transcript.partial.json in --out-dir (left by a run that was "
        "stopped or killed): keep its finished segments, decode only the rest",
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



def settings_from(args: argparse.Namespace) -> Settings:
    """The run's Settings from a parsed command line (the model not resolved yet)."""
    return Settings(
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
