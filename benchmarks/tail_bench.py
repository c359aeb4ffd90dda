"""Tail: server.logtail.tail_lines(path, 50) on a 1 GB log against a 1 MB log.

Both files hold the same ~100-byte log lines and sit in the page cache (the 1 GB one is
written in 1 MiB blocks just before and deleted after), so the figure is the reading
algorithm, not the disk. Calls alternate between the files so noise hits both alike.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import benchmarks.common  # noqa: F401  (puts the repo on sys.path)
from benchmarks.common import Row, median, p99, run_script
from server.jobs.logtail import tail_lines

LINES = 50
MIB = 1 << 20


def write_log(path: Path, mebibytes: int) -> None:
    line = b"2026-01-01 00:00:00 worker 1: decoding window 12345 of 67890, beam 5, ok " + b"x" * 24
    block = b"".join(line + f" {i:04d}\n".encode() for i in range(MIB // (len(line) + 6) + 1))
    block = block[: MIB - 1] + b"\n"  # exactly 1 MiB, ending at a line end
    with path.open("wb") as file:
        for _ in range(mebibytes):
            file.write(block)


def timed(path: Path) -> float:
    began = time.perf_counter()
    lines = tail_lines(path, LINES)
    took = (time.perf_counter() - began) * 1000.0
    if len(lines) != LINES:
        raise RuntimeError(f"tail_lines returned {len(lines)} lines, not {LINES}")
    return took


def rows(quick: bool = False) -> list[Row]:
    runs = 200 if quick else 1000
    with tempfile.TemporaryDirectory(prefix="bench-tail-") as tmp:
        small, big = Path(tmp) / "small.log", Path(tmp) / "big.log"
        try:
            write_log(small, 1)
            write_log(big, 1024)
            for path in (small, big):
                timed(path)  # warm up: the page cache and the first call's imports
            small_ms, big_ms = [], []
            for _ in range(runs):
                small_ms.append(timed(small))
                big_ms.append(timed(big))
        finally:
            for path in (small, big):
                path.unlink(missing_ok=True)
    ratios = [b / s for b, s in zip(big_ms, small_ms, strict=True)]
    held = median(big_ms) / median(small_ms) <= 2 and p99(big_ms) < 5
    return [
        Row("tail", "1 MiB log", f"tail_lines(path, {LINES}) (ms)", runs, median(small_ms), p99(small_ms),
            "baseline", None),
        Row("tail", "1 GiB log", f"tail_lines(path, {LINES}) (ms)", runs, median(big_ms), p99(big_ms),
            "< 5 ms", p99(big_ms) < 5, "written in 1 MiB blocks, deleted after"),
        Row("tail", "1 GiB / 1 MiB", "ratio of paired calls", runs, median(ratios), p99(ratios),
            "ratio of medians ≤ 2 and 1 GiB < 5 ms", held,
            f"ratio of medians {median(big_ms) / median(small_ms):.2f}"),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "tail of a 1 GB log against a 1 MB log", argv)


if __name__ == "__main__":
    sys.exit(main())
