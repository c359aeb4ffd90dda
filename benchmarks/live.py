"""Live dictation (#24): OpenAI Realtime transcription sessions streamed at real time.

Speech made here with espeak-ng: Harvard sentences (benchmarks/heldout.py), voices taking
turns, one or two sentences per utterance (about 2-8 s) with 1.2 s pauses, sent by the
official `openai` SDK in 40 ms frames at real-time pace. Where each utterance starts and
ends is read off the audio itself (first and last loud sample).

- first text: utterance start → its first `delta`; final text: utterance end → its
  `completed`; p90 of each, one session, then two sessions at once;
- WER of all `completed` text against the same audio as an offline job on the same server;
- silence: CPU of the session's job (pipeline tree) and of the server over 20 s of silence.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks import heldout
from benchmarks.client import BenchServer
from benchmarks.common import Row, median, p99, percentile, run_async, run_script
from benchmarks.warm_start import standby_ready, text_of
from tests.helpers.speech import speak
from tests.helpers.wer import wer

RATE = 24000
FRAME_SECONDS = 0.04
VOICES = ("en-us", "en-gb", "en-gb-x-rp")
DEFAULTS = ("--metrics-interval", "1", "--heartbeat-interval", "5")


@dataclass
class Speech:
    path: Path
    pcm: bytes
    spans: list[tuple[float, float]]  # (start, end) of each utterance's sound, seconds
    reference: str


def make_speech(directory: Path, utterances: int, offset: int = 0) -> Speech:
    texts = []
    for number in range(utterances):
        first = heldout.SENTENCES[(offset + 2 * number) % len(heldout.SENTENCES)]
        second = heldout.SENTENCES[(offset + 2 * number + 1) % len(heldout.SENTENCES)]
        texts.append(first if number % 3 == 1 else f"{first} {second}")
    path = directory / f"live-{offset}.wav"
    spoken = speak(path, texts, voices=VOICES)
    with wave.open(str(path)) as audio:
        pcm = audio.readframes(audio.getnframes())
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    spans = []
    for said in spoken:  # espeak pads its speech with quiet: find the sound itself
        piece = samples[int(said.start * RATE) : int(said.end * RATE)]
        loud = np.flatnonzero(np.abs(piece) > 0.02)
        spans.append((said.start + float(loud[0]) / RATE, said.start + float(loud[-1]) / RATE))
    return Speech(path, pcm, spans, " ".join(texts))


@dataclass
class Session:
    """What one streamed session saw: when each event came, by the audio clock."""

    events: list[tuple[float, Any]] = field(default_factory=list)
    job_id: int = 0
    created: asyncio.Event = field(default_factory=asyncio.Event)


async def stream(url: str, pcm: bytes, session: Session) -> None:
    """Send `pcm` at real-time pace and record every event; close normally at the end.

    A session refused with `session_limit` (close 1013, try again later) is tried again:
    a session that just ended holds its slot until its job is recorded, a moment later."""
    import openai

    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="bench", max_retries=0)
    try:
        for _attempt in range(50):
            async with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
                created = await connection.recv()
                if created.type == "error" and created.error.code == "session_limit":
                    await asyncio.sleep(0.1)
                    continue
                await _send_all(connection, created, pcm, session)
                return
        raise RuntimeError("no free slot for a session after 50 tries")
    finally:
        await client.close()


async def _send_all(connection: Any, created: Any, pcm: bytes, session: Session) -> None:
    session.job_id = int(created.session.model_extra["job_id"])
    session.created.set()
    began = time.monotonic()

    async def receive() -> None:
        async for event in connection:
            session.events.append((time.monotonic() - began, event))

    receiver = asyncio.create_task(receive())
    step = int(FRAME_SECONDS * RATE) * 2
    for number, at in enumerate(range(0, len(pcm), step)):
        audio = base64.b64encode(pcm[at : at + step]).decode()
        await connection.send({"type": "input_audio_buffer.append", "audio": audio})
        await asyncio.sleep(max(0.0, began + (number + 1) * FRAME_SECONDS - time.monotonic()))
    await asyncio.sleep(2.0)  # the last utterance's final text
    receiver.cancel()
    await asyncio.gather(receiver, return_exceptions=True)


def latencies(session: Session, spans: Sequence[tuple[float, float]]) -> tuple[list[float], list[float], str]:
    """Per utterance: first delta after its start, completed after its end; the text."""
    items: dict[str, dict[str, Any]] = {}
    for at, event in session.events:
        item = getattr(event, "item_id", None)
        if item is None:
            continue
        entry = items.setdefault(item, {})
        if event.type == "input_audio_buffer.speech_started":
            entry["start"] = event.audio_start_ms / 1000
        elif event.type == "input_audio_buffer.speech_stopped":
            entry["end"] = event.audio_end_ms / 1000
        elif event.type.endswith("transcription.delta"):
            entry.setdefault("delta_at", at)
        elif event.type.endswith("transcription.completed"):
            entry["completed_at"], entry["text"] = at, event.transcript
    first, final = [], []
    for start, end in spans:  # each utterance's items: those whose speech overlaps it
        mine = [e for e in items.values() if e.get("start", 1e9) < end and e.get("end", 1e9) > start]
        deltas = [e["delta_at"] for e in mine if "delta_at" in e]
        done = [e["completed_at"] for e in mine if "completed_at" in e]
        first.append(min(deltas) - start if deltas else float("inf"))
        final.append(max(done) - end if done else float("inf"))
    text = " ".join(e.get("text", "") for e in items.values())
    return first, final, text


def _cpu(process: psutil.Process) -> float:
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


async def idle_share(server: BenchServer, seconds: float) -> tuple[float, float]:
    """CPU share of one core: the session's job, and the server, while silence streams."""
    session = Session()
    silence = bytes(int(seconds * RATE) * 2)
    task = asyncio.create_task(stream(server.url, silence, session))
    created = asyncio.create_task(session.created.wait())
    await asyncio.wait({task, created}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        created.cancel()
        task.result()  # raises what stopped the session
        raise RuntimeError("the silent session ended before it started")
    pid, _ = await server.wait_group(session.job_id)
    job, own = psutil.Process(pid), server.server_process()
    await asyncio.sleep(3.0)  # past the start-up
    before, own_before, began = _cpu(job), own.cpu_times(), time.monotonic()
    await asyncio.sleep(seconds - 5.0)
    took = time.monotonic() - began
    own_after = own.cpu_times()
    job_share = (_cpu(job) - before) / took
    server_share = (own_after.user + own_after.system - own_before.user - own_before.system) / took
    await task
    return job_share, server_share


async def measure(one: Speech, two: Speech, idle_seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with BenchServer(*DEFAULTS) as server:
        await standby_ready(server)
        single = Session()
        await stream(server.url, one.pcm, single)
        out["single"] = latencies(single, one.spans)
        job_id = await server.upload(one.path, on_disconnect="keep")
        await server.wait_final([job_id])
        out["offline"] = await text_of(server, job_id)
        await standby_ready(server)
        pair = Session(), Session()
        await asyncio.gather(stream(server.url, one.pcm, pair[0]), stream(server.url, two.pcm, pair[1]))
        out["pair"] = [latencies(pair[0], one.spans), latencies(pair[1], two.spans)]
        out["idle"] = await idle_share(server, idle_seconds)
    return out


def _row(case: str, measured: str, values: list[float], goal: float, note: str = "") -> Row:
    p90 = percentile(values, 90)
    return Row(
        "live dictation", case, measured, len(values), median(values), p99(values),
        f"p90 ≤ {goal:g} s", bool(p90 <= goal), f"p90 {p90:.2f} s" + (f"; {note}" if note else ""),
    )  # fmt: skip


def rows(quick: bool = False) -> list[Row]:
    if not heldout.available():
        raise RuntimeError("espeak-ng is not installed: no speech to stream")
    count = 4 if quick else 16
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        one = make_speech(Path(tmp), count)
        two = make_speech(Path(tmp), count, offset=7)
        got = run_async(lambda: measure(one, two, 10.0 if quick else 20.0))
    first, final, text = got["single"]
    live_wer, offline_wer = wer(one.reference, text), wer(one.reference, got["offline"])
    pair_first = [v for f, _, _ in got["pair"] for v in f]
    pair_final = [v for _, f, _ in got["pair"] for v in f]
    job_share, server_share = got["idle"]
    caveat = "--quick: few utterances" if quick else ""
    return [
        _row(f"one session, {count} utterances", "utterance start → first delta (s)", first, 2.0, caveat),
        _row(f"one session, {count} utterances", "utterance end → completed (s)", final, 1.5, caveat),
        Row(
            "live dictation", "WER of completed text vs the offline job", "WER (live − offline)", 1,
            live_wer - offline_wer, None, "≤ +0.05", live_wer <= offline_wer + 0.05,
            f"live {100 * live_wer:.1f}% vs offline {100 * offline_wer:.1f}% (same audio, same server)",
        ),
        _row("two sessions at once", "utterance start → first delta (s)", pair_first, 2.5),
        _row("two sessions at once", "utterance end → completed (s)", pair_final, 2.5),
        Row(
            "live dictation", "one session streaming silence", "CPU share of one core (job)", 1,
            job_share, None, "< 5% of a core", job_share + server_share < 0.05,
            f"job {100 * job_share:.1f}% + server {100 * server_share:.1f}% (base64 and socket)",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "live dictation: first and final text, WER, two sessions, silence", argv)


if __name__ == "__main__":
    sys.exit(main())
