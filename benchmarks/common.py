"""What every benchmark shares: a result row, percentiles, the table, and a clean Ctrl-C.

Each script exposes `rows(quick: bool) -> list[Row]` and `main(argv) -> int`; `python -m
benchmarks` calls every `rows` and prints one table. A row holds one measured figure and
its goal; `held` is None when the goal cannot be judged (nothing measured, or no goal).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

EXIT_INTERRUPTED = 130


@dataclass
class Row:
    what: str  # the row name, e.g. "log latency"
    case: str  # which variant, e.g. "1k lines/s × 10 clients"
    measured: str  # the quantity, e.g. "child print → client receive (ms)"
    runs: int  # how many samples the median and p99 come from
    median: float | None
    p99: float | None
    goal: str
    held: bool | None
    note: str = ""  # the headline figure when it is not the median/p99, and caveats

    def verdict(self) -> str:
        return {True: "held", False: "MISSED", None: "n/a"}[self.held]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    position = (len(data) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def p99(values: Sequence[float]) -> float:
    return percentile(values, 99)


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.{digits}g}"


def table(rows: Iterable[Row]) -> str:
    """The rows as one Markdown table."""
    head = "| row | case | measured | runs | median | p99 | goal | verdict | note |"
    lines = [head, "|---|---|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        cells = [
            r.what, r.case, r.measured, str(r.runs), fmt(r.median), fmt(r.p99),
            r.goal, r.verdict(), r.note,
        ]  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """CPU model and core count as lscpu reports them, for RESULTS.md."""
    model, cores = platform.processor() or "unknown", ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            model = value.strip()
        elif key.strip() == "CPU(s)":
            cores = value.strip()
    import os

    return {"cpu": model, "cores": cores or str(os.cpu_count()), "python": platform.python_version()}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer runs and shorter streams")
    return p


def run_script(rows_fn: Callable[[bool], list[Row]], description: str, argv: Sequence[str] | None) -> int:
    """A script's main: run, print the table; Ctrl-C stops what it started and exits 130."""
    args = parser(description).parse_args(argv)
    try:
        rows = rows_fn(args.quick)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(table(rows))
    return 0


def run_async(make: Callable[[], Awaitable[Any]]) -> Any:
    """asyncio.run, with KeyboardInterrupt left to propagate once every `finally` has run."""
    return asyncio.run(make())  # type: ignore[arg-type]


class Deadline:
    """A time bound for every loop: `while deadline:`."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def __bool__(self) -> bool:
        return time.monotonic() < self.end

    @property
    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


async def receive_by(ws: Any, deadline: Deadline) -> Any:
    """The next websocket frame, or TimeoutError at `deadline`. Not ws.receive(timeout=):
    aiohttp starts that timeout afresh after every ping it answers, and the server pings
    every 20 s, so a longer one never fires."""
    async with asyncio.timeout(deadline.left):
        return await ws.receive()


def error_row(what: str, error: BaseException) -> Row:
    text = f"{type(error).__name__}: {error}".replace("\n", " ")[:200]
    return Row(what, "", "not measured", 0, None, None, "", None, note=f"failed: {text}")
