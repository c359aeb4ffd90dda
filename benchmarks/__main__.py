"""`make bench` / `python -m benchmarks`: run every benchmark script, print one table, and
write it to benchmarks/RESULTS.md with the date, CPU model and core count.

    python -m benchmarks [--quick] [--only NAME ...] [--no-write]

A partial run (--quick or --only) prints its table but leaves RESULTS.md alone unless
--write is given. Everything below the notes marker in RESULTS.md is kept as it is.
Ctrl-C stops the running script's servers and children and exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import EXIT_INTERRUPTED, Row, error_row, fmt, machine, table

# (name, module, what it measures) in the order; each module has rows(quick).
SCRIPTS = (
    ("transcription", "benchmarks.transcription", "transcription overhead, parallel scaling"),
    ("log_latency", "benchmarks.log_latency", "log latency, event-loop lag"),
    ("slow_client", "benchmarks.slow_client", "slow client"),
    ("kill_latency", "benchmarks.kill_latency", "kill latency, orphan latency"),
    ("tail", "benchmarks.tail_bench", "tail"),
    ("monitor_cost", "benchmarks.monitor_cost", "monitor cost"),
    ("cgroup_cost", "benchmarks.cgroup_cost", "monitor cost: cgroup accounting vs /proc sampler"),
    ("server_memory", "benchmarks.server_memory", "server memory"),
    ("ray_latency", "benchmarks.ray_latency", "Ray executor: submit → first line, stop → gone"),
    ("warm_start", "benchmarks.warm_start", "warm starts: a 5-minute file, a burst of 12 clips"),
    ("long_recordings", "benchmarks.long_recordings", "long recordings: first text, memory, resume"),
    ("search", "benchmarks.search_bench", "search: FTS5 over 1,000 jobs of 100 segments"),
    ("speakers", "benchmarks.speakers_bench", "speaker labels: DER, count, speed, memory"),
    ("live", "benchmarks.live", "live dictation: first and final text, WER, two sessions, silence"),
)
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
NOTES_MARKER = "<!-- notes: kept as written when the table is regenerated -->"


def run(names: Sequence[str], quick: bool) -> tuple[list[Row], dict[str, float], dict[str, float], bool]:
    """Rows of every named script, seconds each took, the machine's load average as each
    started; a script that fails gives one row saying why."""
    rows: list[Row] = []
    took: dict[str, float] = {}
    loads: dict[str, float] = {}
    for name, module_name, what in SCRIPTS:
        if name not in names:
            continue
        print(f"== {name}: {what}", file=sys.stderr, flush=True)
        began = time.monotonic()
        loads[name] = os.getloadavg()[0]
        try:
            module = importlib.import_module(module_name)
            # Scripts report progress on stdout; the table is the only thing printed there here.
            with contextlib.redirect_stdout(sys.stderr):
                rows.extend(module.rows(quick))
        except KeyboardInterrupt:
            took[name] = time.monotonic() - began
            return rows, took, loads, True
        except Exception as error:
            rows.append(error_row(what, error))
        took[name] = time.monotonic() - began
        print(f"== {name}: {took[name]:.0f} s", file=sys.stderr, flush=True)
    return rows, took, loads, False


def summary(rows: Sequence[Row]) -> str:
    held = [r for r in rows if r.held is True]
    missed = [r for r in rows if r.held is False]
    failed = [r for r in rows if r.runs == 0]
    lines = [f"Goals held: {len(held)}; missed: {len(missed)}; not measured: {len(failed)}."]
    for r in missed:
        lines.append(f"- MISSED: {r.what} ({r.case}): {r.goal}; median {fmt(r.median)}, p99 {fmt(r.p99)}.")
    for r in failed:
        lines.append(f"- NOT MEASURED: {r.what}: {r.note}")
    return "\n".join(lines)


def results_text(rows: Sequence[Row], took: dict[str, float], loads: dict[str, float], quick: bool) -> str:
    info = machine()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    kept = ""
    if RESULTS.exists():
        old = RESULTS.read_text()
        if NOTES_MARKER in old:
            kept = old.split(NOTES_MARKER, 1)[1].lstrip("\n")
    command = "python -m benchmarks" + (" --quick" if quick else "")
    return (
        "# Benchmark results\n\n"
        f"Latest run: finished {now}, `{command}` (`make bench`), {sum(took.values()) / 60:.1f} min.\n"
        f"Machine: {info['cpu']}, {info['cores']} cores (shared and noisy), Python {info['python']}.\n"
        "Load average (1 min) as each script started: "
        + ", ".join(f"{name} {load:.1f}" for name, load in loads.items())
        + ".\n\n"
        "Every figure is a ratio or a percentile measured in this one run against its own "
        "baseline. `runs` is how many samples the median and p99 come from; with few samples "
        "the p99 is close to the maximum. `verdict` says whether the row holds its goal.\n\n"
        f"{table(rows)}\n\n{summary(rows)}\n\n{NOTES_MARKER}\n\n{kept}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter streams, 1 min audio")
    names = [s[0] for s in SCRIPTS]
    parser.add_argument("--only", action="append", choices=names, help="run only this script (repeatable)")
    parser.add_argument("--write", action="store_true", help="write RESULTS.md even for a partial run")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args(argv)
    rows, took, loads, interrupted = run(args.only or names, args.quick)
    print(table(rows))
    print()
    print(summary(rows))
    if interrupted:
        print("interrupted: the table above is partial", file=sys.stderr)
        return EXIT_INTERRUPTED
    full = not args.quick and not args.only
    if (full or args.write) and not args.no_write:
        RESULTS.write_text(results_text(rows, took, loads, args.quick))
        print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
