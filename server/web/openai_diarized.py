"""OpenAI's diarized_json on top of the speaker stage: segments with speakers, as a body
or as `transcript.text.segment` events (issue 25)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from server import keys
from server.jobs.state import JobStatus
from server.web.openai_follow import JobFollower, read_transcript

MAX_KNOWN_NAMES = 10


def known_names(every: dict[str, list[str]]) -> tuple[str, ...]:
    """`known_speaker_names[]`, which name the speakers in order of first appearance."""
    names = [n.strip() for n in every.get("known_speaker_names[]", []) + every.get("known_speaker_names", [])]
    return tuple(n for n in names if n)[:MAX_KNOWN_NAMES]


def _naming(segments: Sequence[dict[str, Any]], known: Sequence[str]) -> dict[str, str]:
    order: list[str] = []
    for s in segments:
        if s.get("speaker") and s["speaker"] not in order:
            order.append(s["speaker"])
    return dict(zip(order, known, strict=False))


def diarized_segments(document: dict[str, Any], known: Sequence[str]) -> list[dict[str, Any]]:
    segments = document.get("segments", [])
    names = _naming(segments, known)
    return [
        {
            "type": "transcript.text.segment",
            "id": f"seg_{number}",
            "start": s["start"],
            "end": s["end"],
            "text": s.get("text", "").strip(),
            "speaker": names.get(s.get("speaker") or "A", s.get("speaker") or "A"),
        }
        for number, s in enumerate(segments)
    ]


def diarized(
    document: dict[str, Any], job: dict[str, Any], text: str, known: Sequence[str]
) -> dict[str, Any]:
    """OpenAI's TranscriptionDiarized from our transcript.json."""
    return {
        "task": "transcribe",
        "duration": document.get("duration") or job.get("duration_seconds") or 0.0,
        "text": text,
        "segments": diarized_segments(document, known),
    }


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def stream(
    request: web.Request, job_id: int, follower: JobFollower, lost: asyncio.Task[None], known: Sequence[str]
) -> web.StreamResponse | None:
    """Wait for the job (speakers come at its end), then send one event per segment and
    `transcript.text.done`. None when the job did not complete (the caller answers)."""
    await follower.wait_end(lost)
    if follower.status != JobStatus.COMPLETED:
        return None
    job = await request.app[keys.STORE].get_job(job_id) or {}
    document = await asyncio.to_thread(read_transcript, Path(job["output_path"]))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for segment in diarized_segments(document, known):
        await response.write(_event(segment))
    text = " ".join(s.get("text", "").strip() for s in document.get("segments", []))
    await response.write(_event({"type": "transcript.text.done", "text": text}))
    await response.write_eof()
    return response
