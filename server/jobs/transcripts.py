"""A finished job's transcript: read in from its files once, then served from the store,
edits included, in every export format."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.formats import Names
from pipeline.formats import render as render_format
from pipeline.transcript import Segment
from server.jobs.state import keeps_transcript

if TYPE_CHECKING:
    from server.store import Store

log = logging.getLogger(__name__)

# Export formats: the pipeline's four, and OpenAI's verbose_json (rendered by the web layer).
EXPORTS = ("txt", "srt", "vtt", "json")


def read_document(out_dir: Path, name: str = "transcript.json") -> dict[str, Any] | None:
    """The transcript file's JSON, or None if it is missing or unreadable."""
    try:
        data = json.loads((out_dir / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def ensure_stored(store: Store, job: dict[str, Any]) -> bool:
    """Read a completed job's transcript.json into the store if it is not there yet (a job
    that ended before this server version, or whose import was interrupted). True when the
    store holds its transcript afterwards."""
    if await store.transcript_version(job["id"]) is not None:
        return True
    if not keeps_transcript(job) or not job.get("output_path"):
        return False
    document = await asyncio.to_thread(read_document, Path(job["output_path"]))
    if document is None:
        return False
    await store.import_transcript(job["id"], document)
    return True


async def import_missing(store: Store, *, limit: int = 100_000) -> int:
    """Store the transcripts of completed jobs that have none stored; returns how many.
    Run once at start-up, so search covers jobs that finished before it existed."""
    count = 0
    for job in await store.jobs_without_transcript(limit=limit):
        try:
            if await ensure_stored(store, job):
                count += 1
        except Exception:  # one bad file must not keep the others out of the index
            log.exception("job %s: could not read its transcript into the database", job["id"])
    return count


def segments_of(transcript: dict[str, Any]) -> list[Segment]:
    return [Segment.from_dict(s) for s in transcript["segments"]]


def render(kind: str, transcript: dict[str, Any], names: Names | None = None) -> str:
    """The stored transcript (as shown at its version) in one of EXPORTS; `names` renames
    speakers."""
    if kind not in EXPORTS:
        raise ValueError(f"no export format {kind!r}")
    meta = {**transcript["meta"], "version": transcript["shown"]}
    return render_format(kind, segments_of(transcript), meta, names)


def document_of(transcript: dict[str, Any]) -> dict[str, Any]:
    """transcript.json's shape (for OpenAI's formats), from the stored transcript."""
    return json.loads(render("json", transcript))
