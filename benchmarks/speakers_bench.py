"""Speaker labels (issue 25): error rate, speaker count, speed and memory, on espeak-ng
conversations of 2, 3 and 4 voices (benchmarks/conversations.py) and on jfk.flac.

Each file goes through a running server twice, as a user's job: with speakers=auto and
without. DER is computed from the words' speakers against the RTTM reference
(benchmarks/der.py), with the standard 0.25 s collar and without one.

    python -m benchmarks.speakers_bench [--quick]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.client import BenchServer
from benchmarks.common import Row, median, p99, run_async, run_script
from benchmarks.conversations import build, read_rttm
from benchmarks.der import der, word_turns

JFK = Path(__file__).resolve().parents[2] / "shared" / "audio" / "jfk.flac"
DER_GOAL = 0.10
SPEED_GOAL = 2.0


async def _job(server: BenchServer, audio: Path, **fields: str) -> tuple[float, dict[str, Any]]:
    """Seconds from upload to completed, and the job's transcript.json."""
    began = time.perf_counter()
    job_id = await server.upload(audio, on_disconnect="keep", **fields)
    await server.wait_final([job_id])
    took = time.perf_counter() - began
    job = await server.job(job_id)
    if job["status"] != "completed":
        raise RuntimeError(f"job {job['status']}: {job.get('error_message')}")
    return took, dict(await server.get(f"/api/jobs/{job_id}/transcript.json"))


def _peak_mb(document: dict[str, Any]) -> float:
    """The job's processes' peaks added up: leader, decoding workers, speaker stage."""
    memory = document.get("memory", {})
    speakers = document.get("speakers", {}).get("peak_mb", 0.0)
    return float(memory.get("leader_peak_mb", 0.0) + sum(memory.get("worker_peak_mb", [])) + speakers)


async def measure(files: Sequence[tuple[str, Path, Path | None, int]]) -> list[dict[str, Any]]:
    out = []
    async with BenchServer("--metrics-interval", "1", "--heartbeat-interval", "5") as server:
        for number, (name, audio, rttm, voices) in enumerate(files):
            # Alternate which goes first, so a warm-up or a drift in load hits both sides.
            if number % 2 == 0:
                plain_s, plain = await _job(server, audio)
                spk_s, labelled = await _job(server, audio, speakers="auto")
            else:
                spk_s, labelled = await _job(server, audio, speakers="auto")
                plain_s, plain = await _job(server, audio)
            found = labelled.get("speakers", {}).get("count")
            result = {
                "name": name,
                "voices": voices,
                "found": found,
                "ratio": spk_s / plain_s,
                "plain_s": plain_s,
                "speakers_s": spk_s,
                "stage_s": labelled.get("timings", {}).get("speakers"),
                "peak_mb": _peak_mb(labelled),
                "plain_peak_mb": _peak_mb(plain),
            }
            if rttm is not None:
                reference = read_rttm(rttm)
                hypothesis = word_turns(labelled["segments"])
                result["der"] = der(reference, hypothesis, collar=0.25)
                result["der_no_collar"] = der(reference, hypothesis, collar=0.0)
            out.append(result)
            print(
                f"  speakers: {name}: found {found} of {voices}, DER {result.get('der', float('nan')):.3f}, "
                f"job {spk_s:.1f} s vs {plain_s:.1f} s without",
                file=sys.stderr,
            )
    return out


def rows(quick: bool = False) -> list[Row]:
    seconds = 60.0 if quick else 150.0
    counts = (2,) if quick else (2, 3, 4)
    files: list[tuple[str, Path, Path | None, int]] = []
    for n in counts:
        made = build(n, seconds=seconds)
        files.append((f"{n} voices", made.audio, made.rttm, n))
    files.append(("jfk.flac", JFK, None, 1))
    measured = run_async(lambda: measure(files))
    out = []
    for r in (r for r in measured if "der" in r):
        out.append(
            Row(
                "speakers: error rate", f"{r['name']}, {seconds:.0f} s", "DER, 0.25 s collar",
                1, r["der"], r["der"], f"≤ {DER_GOAL:.0%}", r["der"] <= DER_GOAL,
                f"no collar {100 * r['der_no_collar']:.1f}%",
            )
        )  # fmt: skip
    right = [r["found"] == r["voices"] for r in measured]
    out.append(
        Row(
            "speakers: count", "auto, " + ", ".join(r["name"] for r in measured), "share counted right",
            len(right), sum(right) / len(right), min(right), "all right", all(right),
            "; ".join(f"{r['name']}: {r['found']}" for r in measured),
        )
    )  # fmt: skip
    # Conversations and the short real clip apart: on an 11 s clip the stage's fixed start
    # (a process, importing torch: about 1.5 s) weighs against a second of transcription.
    for label, group in (
        ("conversations", [r for r in measured if "der" in r]),
        ("short real clip", [r for r in measured if "der" not in r]),
    ):
        ratios = [r["ratio"] for r in group]
        out.append(
            Row(
                "speakers: speed", f"{label}: job with / without speakers", "upload → completed ratio",
                len(ratios), median(ratios), p99(ratios), f"≤ {SPEED_GOAL:g}×", max(ratios) <= SPEED_GOAL,
                "; ".join(f"{r['name']}: {r['speakers_s']:.1f} s vs {r['plain_s']:.1f} s" for r in group),
            )
        )  # fmt: skip
    peaks = [r["peak_mb"] for r in measured]
    out.append(
        Row(
            "speakers: memory", "job peak, processes summed", "MiB with speakers",
            len(peaks), median(peaks), max(peaks), "reported", None,
            "without: " + ", ".join(f"{r['name']} {r['plain_peak_mb']:.0f}" for r in measured)
            + "; with: " + ", ".join(f"{r['name']} {r['peak_mb']:.0f}" for r in measured),
        )
    )  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
