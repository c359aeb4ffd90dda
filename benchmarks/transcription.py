"""Transcription overhead and parallel scaling, on ≥ 5 minutes of speech.

The direct faster-whisper calls, the pipeline's P×T configurations and the audio come from
benchmarks/pipeline_bench.py (the pipeline's own benchmark); this script adds the path a
user takes: upload → completed through a running server in its default configuration,
timed against a direct call made right before each server run (pairs, so the machine's
noise hits both sides of each ratio alike).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from benchmarks import pipeline_bench
from benchmarks.client import BenchServer
from benchmarks.common import Row, median, p99, run_async, run_script
from pipeline.settings import usable_cores
from tests.helpers.wer import wer

MINUTES = 5.0


def cpu_seconds(proc: psutil.Process) -> float:
    """The server's CPU time plus that of every descendant it has reaped (the pipeline's
    leader, which has reaped its workers)."""
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


async def through_server(server: BenchServer, audio: Path) -> tuple[float, float, str, dict[str, Any]]:
    """Seconds from the start of the upload until the job reads completed, the CPU seconds
    the server and its pipeline spent on it, the transcript, and the pipeline's own timings."""
    proc = server.server_process()
    cpu = cpu_seconds(proc)
    began = time.perf_counter()
    job_id = await server.upload(audio, on_disconnect="keep")
    await server.wait_final([job_id])
    took = time.perf_counter() - began
    job = await server.job(job_id)
    await asyncio.sleep(0.2)  # the runner reaps the leader as it records the ending
    cpu = cpu_seconds(proc) - cpu
    if job["status"] != "completed":
        raise RuntimeError(f"server job {job['status']}: {job.get('error_message')}")
    assert server.session is not None
    async with server.session.get(f"{server.url}/api/jobs/{job_id}/transcript.txt") as response:
        response.raise_for_status()
        text = await response.text()
    async with server.session.get(f"{server.url}/api/jobs/{job_id}/transcript.json") as response:
        timings = dict((await response.json(content_type=None)).get("timings", {}))
    return took, cpu, text, timings


async def server_pairs(audio: Path, reference: str, mode: str, pairs: int) -> list[dict[str, Any]]:
    """`pairs` × (direct call in `mode`, then the same audio through the server)."""
    out = []
    # The server's defaults (the helper's faster test intervals put back), the real pipeline.
    defaults = ("--metrics-interval", "1", "--heartbeat-interval", "5")
    async with BenchServer(*defaults) as server:
        for number in range(pairs):
            # Alternate which side goes first, so a drift in the machine's load hits both.
            if number % 2 == 0:
                direct = await asyncio.to_thread(pipeline_bench._direct_in_child, mode, audio, usable_cores())
                served, cpu, text, timings = await through_server(server, audio)
            else:
                served, cpu, text, timings = await through_server(server, audio)
                direct = await asyncio.to_thread(pipeline_bench._direct_in_child, mode, audio, usable_cores())
            out.append(
                {
                    "direct_s": direct["wall_s"],
                    "direct_process_s": direct["process_wall_s"],
                    "direct_cpu_s": direct["cpu_s"],
                    "server_s": served,
                    "server_cpu_s": cpu,
                    "direct_wer": wer(reference, direct["text"]),
                    "server_wer": wer(reference, text),
                    "server_timings": timings,
                }
            )
            print(f"  transcription: direct {mode} {direct['wall_s']:.1f} s, server {served:.1f} s",
                  file=sys.stderr)  # fmt: skip
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def scaling_rows(measured: list[dict[str, Any]]) -> list[Row]:
    by = {r["config"]: r for r in measured}
    base = by.get("pipeline 1×2")
    if base is None:
        return []
    rows = []
    for name in ("pipeline 1×2", "pipeline 2×1", "pipeline 2×2"):
        r = by.get(name)
        if r is None:
            continue
        used = r.get("effective") or {}
        ratio = r["wall_s"] / base["wall_s"]
        is_base = name == "pipeline 1×2"
        rows.append(
            Row("parallel scaling", name.removeprefix("pipeline ") + (" (baseline)" if is_base else ""),
                "pipeline wall / 1×2 wall, best of 2 each", 1, ratio, None,
                "baseline" if is_base else "never slower than 1×2 (≤ 1.05: noise)",
                None if is_base else ratio <= 1.05,
                f"{r['wall_s']:.1f} s for {r['audio_s']:.0f} s of audio, {r['cpu_s']:.1f} CPU s; "
                f"ran as {used.get('processes')}×{used.get('threads')}; WER {100 * r['wer']:.1f}%")
        )  # fmt: skip
    return rows


def rows(quick: bool = False) -> list[Row]:
    minutes = 1.0 if quick else MINUTES
    # pipeline_bench keeps each configuration's best of two rounds (the sequential direct
    # call runs once: it alone takes minutes); the pairs below compare the server with the
    # fastest direct call again, back to back.
    measured = pipeline_bench.rows(quick=quick, minutes=minutes, repeats=1 if quick else 2)
    directs = [r for r in measured if r["config"].startswith("direct")]
    fastest = min(directs, key=lambda r: r["wall_s"])
    mode = "batched" if "batched" in fastest["config"] else "sequential"
    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as tmp:
        audio, reference = pipeline_bench.build_audio(Path(tmp), minutes)
        pairs = run_async(lambda: server_pairs(audio, reference, mode, 1 if quick else 2))
    ratios = [p["server_s"] / p["direct_s"] for p in pairs]
    best = min(p["server_s"] for p in pairs) / min(p["direct_s"] for p in pairs)
    process = median([p["server_s"] / p["direct_process_s"] for p in pairs])
    cpu = median([p["server_cpu_s"] / p["direct_cpu_s"] for p in pairs])
    server_wer = max(p["server_wer"] for p in pairs)
    direct_wer = min(fastest["wer"], *(p["direct_wer"] for p in pairs))
    note = (
        f"{fastest['audio_s']:.0f} s of audio, pairs run back to back; server "
        f"{median([p['server_s'] for p in pairs]):.1f} s vs direct {mode} "
        f"{median([p['direct_s'] for p in pairs]):.1f} s (model load included on both sides); "
        f"best-of ratio {best:.3f}; against the direct call's whole process (interpreter start, "
        f"imports) {process:.3f}; CPU seconds {cpu:.3f}×; WER server {100 * server_wer:.1f}% vs "
        f"direct {100 * direct_wer:.1f}%; the server's pipeline timings (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in pairs[-1]["server_timings"].items() if _is_number(v))
        + ("; --quick: 1 min of audio, not the goal's 5" if quick else "")
    )
    overhead = Row(
        "transcription overhead", "server default config", f"upload → completed / direct {mode} call",
        len(ratios), median(ratios), p99(ratios), "≤ 1.1× fastest direct; WER no worse",
        median(ratios) <= 1.1 and server_wer <= direct_wer + 1e-9, note,
    )  # fmt: skip
    others = [
        Row("transcription overhead", r["config"], "wall / fastest direct (one run)", 1,
            r["ratio_to_fastest_direct"], None, "reference", None,
            f"{r['wall_s']:.1f} s, {r['cpu_s']:.1f} CPU s; WER {100 * r['wer']:.1f}%")
        for r in measured
        if r["config"] in ("direct batched", "direct sequential", "pipeline default")
    ]  # fmt: skip
    return [overhead, *others, *scaling_rows(measured)]


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "transcription overhead and parallel scaling", argv)


if __name__ == "__main__":
    sys.exit(main())
