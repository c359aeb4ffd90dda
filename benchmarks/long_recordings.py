"""Long recordings (#23): text from the first seconds, memory that does not grow with the
file, and a resume that does not start over.

Audio: held-out espeak-ng speech (benchmarks/heldout.py, several voices) of 5, 20 and 60
minutes, made once and cached outside the repository in
$XDG_CACHE_HOME/transcriptor/bench-audio (the 60-minute file takes a few minutes to make).

Through a server at its defaults with a ready standby, each file uploaded alone, followed
over /ws as a page follows it:
- **first segment**: the job's `running` status → its first segment message;
- **longest gap** between progress messages that move, from running to completed;
- **peak memory** of the job's whole process tree (PSS, sampled every 0.25 s);
- **speed**: upload → completed against the user's own whole process
  (`BatchedInferencePipeline`, batch 8, beam 5, int8, 2 threads) on the same file, whose
  peak PSS is sampled the same way; WER of both.
- **resume**: SIGKILL the server at about half of the 20-minute job and start it again at
  once on the same data directory: restart → completed against the uninterrupted job's
  upload → completed, no segment twice, WER within 0.01 of the uninterrupted job's.

--quick: 1- and 2-minute files (no 60), one run each: a smoke test, not the goals.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from benchmarks import heldout
from benchmarks.client import BenchServer, messages
from benchmarks.common import REPO, Row, run_async, run_script
from benchmarks.warm_start import DEFAULTS, DIRECT, standby_ready, text_of
from tests.helpers.wer import wer

SAMPLE_SECONDS = 0.25


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "transcriptor" / "bench-audio"
    path.mkdir(parents=True, exist_ok=True)
    return path


def recording(minutes: float) -> tuple[Path, str]:
    """The held-out file of `minutes` and its reference text, made once and cached."""
    folder = cache_dir()
    audio, text = folder / f"heldout-{minutes:g}min.wav", folder / f"heldout-{minutes:g}min.txt"
    if not (audio.exists() and text.exists()):
        with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
            made, reference = heldout.long_file(Path(tmp), minutes)
            made.replace(audio)
        text.write_text(reference)
    return audio, text.read_text()


def tree_pss(root: psutil.Process | None, group: int | None = None) -> int:
    """PSS of `root` and its descendants, or of every process in `group`."""
    if group is not None:
        procs = [p for p in psutil.process_iter() if _pgid(p.pid) == group]
    elif root is not None:
        procs = [root, *root.children(recursive=True)]
    else:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def direct_process(audio: Path) -> dict[str, Any]:
    """The user's own whole batched process: wall seconds, peak PSS, its text."""
    began = time.perf_counter()
    proc = psutil.Popen(
        [sys.executable, "-c", DIRECT, "batched", str(audio)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_pss(proc))
        time.sleep(SAMPLE_SECONDS)
    took = time.perf_counter() - began
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"direct process exited {proc.returncode}")
    return {"seconds": took, "peak_pss": peak, "text": json.loads(out.strip().splitlines()[-1])[0]}


async def _follow(ws: Any, job_id: int, times: dict[str, Any]) -> None:
    """Record when the job ran, its first segment, and each moving progress message."""
    last_done = -1.0
    while True:
        frame = await ws.receive()
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"websocket ended: {frame.type!r}")
        now = time.perf_counter()
        for m in messages(frame.data):
            if m.get("job") != job_id:
                continue
            kind = m.get("type")
            status = m.get("status") or (m.get("data") or {}).get("status")
            if kind in ("status", "job") and status == "running":
                times.setdefault("running", now)
            elif kind == "segment":
                times.setdefault("first_segment", now)
            elif kind == "progress" and float(m["done_seconds"]) > last_done:
                last_done = float(m["done_seconds"])
                times.setdefault("progress", []).append(now)
            if kind in ("status", "job") and status in ("completed", "failed", "cancelled"):
                times["final"], times["status"] = now, status
                return


async def through_server(server: BenchServer, audio: Path) -> dict[str, Any]:
    """One upload, followed to its end, its tree's PSS sampled meanwhile."""
    times: dict[str, Any] = {}
    peak = 0
    async with server.ws() as ws:
        # Every job's status changes from before the upload, so `running` is not missed.
        await ws.send_json({"type": "subscribe_jobs"})
        began = time.perf_counter()
        job_id = await server.upload(audio, on_disconnect="keep")
        await ws.send_json({"type": "subscribe", "job": job_id})
        follow = asyncio.create_task(_follow(ws, job_id, times))
        try:
            _, group = await server.wait_group(job_id, timeout=120)
            while not follow.done():
                peak = max(peak, await asyncio.to_thread(tree_pss, None, group))
                await asyncio.sleep(SAMPLE_SECONDS)
        finally:
            await follow
    if times.get("status") != "completed":
        raise RuntimeError(f"job {job_id} ended {times.get('status')}")
    running = times.get("running", began)
    moves = [running, *times.get("progress", []), times["final"]]
    return {
        "seconds": times["final"] - began,
        "first_segment": times.get("first_segment", times["final"]) - running,
        "longest_gap": max(b - a for a, b in itertools.pairwise(moves)),
        "peak_pss": peak,
        "text": await text_of(server, job_id),
    }


async def resume_case(server: BenchServer, audio: Path) -> dict[str, Any]:
    """SIGKILL the server once the job is half done, start it again on the same data
    directory at once: restart → completed, and the transcript."""
    async with server.ws() as ws:
        job_id = await server.upload(audio, on_disconnect="keep")
        await ws.send_json({"type": "subscribe", "job": job_id})
        while True:
            frame = await ws.receive()
            if frame.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"websocket ended: {frame.type!r}")
            if any(m.get("type") == "progress" and m.get("job") == job_id and m["progress"] >= 0.5
                   for m in messages(frame.data)):  # fmt: skip
                break
    await asyncio.to_thread(server.proc.sigkill)
    restarted = time.perf_counter()
    await asyncio.to_thread(server.proc.start)
    final = await server.wait_final([job_id])
    took = time.perf_counter() - restarted
    if final[job_id] != "completed":
        raise RuntimeError(f"the resumed job ended {final[job_id]}")
    assert server.session is not None
    async with server.session.get(f"{server.url}/api/jobs/{job_id}/transcript.json") as response:
        segments = (await response.json(content_type=None))["segments"]
    keys = [(round(s["start"], 2), s["text"]) for s in segments]
    return {"seconds": took, "duplicates": len(keys) - len(set(keys)), "text": await text_of(server, job_id)}


async def measure(
    files: dict[float, tuple[Path, str]], speed_on: Sequence[float], resume_on: float
) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    async with BenchServer(*DEFAULTS) as server:
        for minutes, (audio, _) in files.items():
            await standby_ready(server)
            out[minutes] = {"server": await through_server(server, audio)}
            if minutes in speed_on:
                out[minutes]["direct"] = await asyncio.to_thread(direct_process, audio)
            got = out[minutes]["server"]
            print(f"  long recordings: {minutes:g} min, first segment {got['first_segment']:.2f} s, "
                  f"longest gap {got['longest_gap']:.2f} s, {got['seconds']:.1f} s, "
                  f"peak {got['peak_pss'] / 2**20:.0f} MiB", file=sys.stderr)  # fmt: skip
        await standby_ready(server)
        out["resume"] = await resume_case(server, files[resume_on][0])
        print(f"  long recordings: resumed {resume_on:g} min in {out['resume']['seconds']:.1f} s",
              file=sys.stderr)  # fmt: skip
    return out


def rows(quick: bool = False) -> list[Row]:
    if not heldout.available():
        raise RuntimeError("espeak-ng is not installed: no held-out speech to measure on")
    lengths = (1.0, 2.0) if quick else (5.0, 20.0, 60.0)
    short, middle = lengths[0], lengths[1]
    files = {m: recording(m) for m in lengths}
    got = run_async(lambda: measure(files, (short, middle), middle))
    return _rows(files, got, got.pop("resume"), quick)


def _rows(
    files: dict[float, tuple[Path, str]], got: dict[float, Any], resume: dict[str, Any], quick: bool
) -> list[Row]:
    lengths = sorted(files)
    short, middle, longest = lengths[0], lengths[1], lengths[-1]
    note = "; --quick: short files, not the goals' lengths" if quick else ""
    mib = 2**20
    out = []
    for m in lengths:
        s = got[m]["server"]
        out.append(Row(
            "long recordings", f"{m:g}-min held-out file", "job running → first segment (s)", 1,
            s["first_segment"], None, "≤ 3 s", s["first_segment"] <= 3.0,
            f"longest gap between moving progress updates {s['longest_gap']:.2f} s (goal ≤ 5 s); "
            f"upload → completed {s['seconds']:.1f} s; peak PSS {s['peak_pss'] / mib:.0f} MiB{note}",
        ))  # fmt: skip
        out.append(Row(
            "long recordings", f"{m:g}-min held-out file", "longest gap between progress updates (s)",
            1, s["longest_gap"], None, "≤ 5 s", s["longest_gap"] <= 5.0, note.lstrip("; "),
        ))  # fmt: skip
    for m in (short, middle):
        s, d = got[m]["server"], got[m]["direct"]
        ratio = s["seconds"] / d["seconds"]
        ref = files[m][1]
        server_wer, direct_wer = wer(ref, s["text"]), wer(ref, d["text"])
        out.append(Row(
            "long recordings", f"{m:g}-min held-out file", "upload → completed / whole direct process",
            1, ratio, None, "≤ 0.95×; WER no worse", ratio <= 0.95 and server_wer <= direct_wer + 1e-9,
            f"server {s['seconds']:.1f} s vs direct {d['seconds']:.1f} s; WER server "
            f"{100 * server_wer:.1f}% vs direct {100 * direct_wer:.1f}%{note}",
        ))  # fmt: skip
    s, d = got[middle]["server"], got[middle]["direct"]
    ratio = s["peak_pss"] / d["peak_pss"]
    out.append(Row(
        "long recordings", f"{middle:g}-min held-out file", "job tree peak PSS / direct process peak PSS",
        1, ratio, None, "≤ 1×", ratio <= 1.0,
        f"job {s['peak_pss'] / mib:.0f} MiB vs direct {d['peak_pss'] / mib:.0f} MiB{note}",
    ))  # fmt: skip
    ratio = got[longest]["server"]["peak_pss"] / got[short]["server"]["peak_pss"]
    out.append(Row(
        "long recordings", f"{longest:g} vs {short:g} min", "job tree peak PSS, long / short", 1,
        ratio, None, "≤ 1.15×", ratio <= 1.15, f"{note.lstrip('; ')}",
    ))  # fmt: skip
    whole = got[middle]["server"]
    ratio = resume["seconds"] / whole["seconds"]
    ref = files[middle][1]
    wer_gap = wer(ref, resume["text"]) - wer(ref, whole["text"])
    held = ratio <= 0.65 and resume["duplicates"] == 0 and wer_gap <= 0.01
    out.append(Row(
        "long recordings", f"{middle:g}-min file, the server SIGKILLed at half",
        "restart → completed / uninterrupted upload → completed", 1, ratio, None,
        "≤ 0.65×; no segment twice; WER within 0.01", held,
        f"resumed job {resume['seconds']:.1f} s after the restart vs {whole['seconds']:.1f} s "
        f"uninterrupted; {resume['duplicates']} duplicate segment(s); WER {100 * wer_gap:+.2f} "
        f"points against the uninterrupted job{note}",
    ))  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "long recordings: first text, progress cadence, memory, resume", argv)


if __name__ == "__main__":
    sys.exit(main())
