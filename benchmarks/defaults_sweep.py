"""Re-measure the pipeline's decoding defaults on held-out speech (benchmarks/heldout.py).

    python -m benchmarks.defaults_sweep [--minutes 2]

Each variant is a whole `python -m pipeline` run, changing one option from the defaults
(batch size, beam, threads, word timestamps); the direct batched call the warm-start goal
compares with is measured on the same audio for its WER. CPU seconds are reported
because wall time is noise on a shared machine. Results go in PIPELINE_NOTES.md by hand.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks import heldout, pipeline_bench
from benchmarks.warm_start import direct_process
from tests.helpers.wer import wer

VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("default (batch 8, beam 5, 2 threads, no words)", ()),
    ("word timestamps on", ("--word-timestamps",)),
    ("batch 4", ("--batch-size", "4")),
    ("batch 16", ("--batch-size", "16")),
    ("beam 1 (greedy)", ("--beam-size", "1")),
    ("beam 3", ("--beam-size", "3")),
    ("1 thread", ("--threads", "1")),
    ("sequential (batch 0)", ("--batch-size", "0")),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.defaults_sweep")
    parser.add_argument("--minutes", type=float, default=2.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        audio, reference = heldout.long_file(Path(tmp), args.minutes)
        took, [text] = direct_process("batched", [audio])
        print(f"| direct batched call (whole process) | {took:.1f} | – | {100 * wer(reference, text):.1f}% |")
        for number, (name, extra) in enumerate(VARIANTS):
            out = Path(tmp) / f"out-{number}"
            run = pipeline_bench._pipeline(audio, out, [*extra, "--language", "en", "--formats", "json"])
            print(
                f"| pipeline {name} | {run['wall_s']:.1f} | {run['cpu_s']:.1f} | "
                f"{100 * wer(reference, run['text']):.1f}% |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
