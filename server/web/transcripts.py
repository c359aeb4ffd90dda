"""A job's audio, segments, exports, edits and their history, and search across jobs."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from server import keys
from server.jobs.state import keeps_transcript
from server.jobs.transcripts import document_of, ensure_stored, render
from server.store.transcripts import EditConflict, SearchQueryError
from server.web.api import job_or_404
from server.web.errors import ApiError
from server.web.openai import verbose
from server.web.speakers import names_of

TRANSCRIPT_TYPES = {
    "txt": "text/plain",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "json": "application/json",
    "verbose_json": "application/json",
}
# Browsers play these; mimetypes does not know all of them on every system.
AUDIO_TYPES = {
    ".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg",
    ".opus": "audio/ogg", ".flac": "audio/flac", ".m4a": "audio/mp4", ".aac": "audio/aac",
    ".webm": "audio/webm", ".mp4": "video/mp4",
}  # fmt: skip
MAX_EDIT_CHARS = 10_000
MAX_QUERY_CHARS = 500


def _int(raw: str | None, name: str, default: int | None = None) -> int | None:
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise ApiError(400, f"{name} must be a whole number")
    return int(raw)


async def _stored(request: web.Request, job: dict[str, Any], version: int | None = None) -> dict[str, Any]:
    """The job's stored transcript at `version`, read in from its files on first use."""
    store = request.app[keys.STORE]
    if not await ensure_stored(store, job):
        raise ApiError(404, f"job {job['id']} has no transcript ({job['status']})")
    try:
        transcript = await store.transcript(job["id"], version)
    except LookupError as error:
        raise ApiError(404, str(error)) from None
    assert transcript is not None  # ensure_stored said it is there
    return transcript


async def job_audio(request: web.Request) -> web.StreamResponse:
    """The uploaded audio, with ranges (aiohttp's FileResponse answers Range with 206)."""
    job = await job_or_404(request)
    path = Path(job["original_path"])
    if not await asyncio.to_thread(path.is_file):
        raise ApiError(404, f"job {job['id']} has no audio")
    suffix = Path(job["filename"]).suffix.lower() or path.suffix.lower()
    kind = AUDIO_TYPES.get(suffix) or mimetypes.guess_type(f"x{suffix}")[0] or "application/octet-stream"
    return web.FileResponse(path, headers={"Content-Type": kind, "Cache-Control": "private, max-age=3600"})


async def job_segments(request: web.Request) -> web.Response:
    """A completed job's stored transcript (edits in, `?version=N`); otherwise the
    segments so far (live while it runs, else from its files), numbered."""
    job = await job_or_404(request)
    store = request.app[keys.STORE]
    if keeps_transcript(job) and await ensure_stored(store, job):
        try:
            stored = await store.transcript(job["id"], _int(request.query.get("version"), "version"))
        except LookupError as error:
            raise ApiError(404, str(error)) from None
        assert stored is not None  # ensure_stored said it is there
        return web.json_response(
            {"version": stored["version"], "shown": stored["shown"], "segments": stored["segments"]}
        )
    segments = await request.app[keys.RUNNER].segments(job)
    return web.json_response({"segments": [{"id": n, **s} for n, s in enumerate(segments)]})


async def transcript(request: web.Request) -> web.Response:
    """An export, with every edit; `?version=N` gives it as it read then (1: the original)."""
    job = await job_or_404(request)
    kind = request.match_info["kind"]
    if kind not in TRANSCRIPT_TYPES:
        raise ApiError(404, f"no transcript format {kind[:12]!r}; use {', '.join(TRANSCRIPT_TYPES)}")
    if not keeps_transcript(job):
        raise ApiError(404, f"job {job['id']} has no transcript ({job['status']})")
    stored = await _stored(request, job, _int(request.query.get("version"), "version"))
    if kind == "verbose_json":
        document = document_of(stored)
        body = json.dumps(verbose(document, job, document["text"], words=True), ensure_ascii=False)
    else:
        body = render(kind, stored, names_of(job))
    stem = Path(job["filename"]).stem or "transcript"
    safe_stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80]
    extension = "json" if kind == "verbose_json" else kind
    return web.Response(
        text=body,
        headers={
            "Content-Type": f"{TRANSCRIPT_TYPES[kind]}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{safe_stem}.{extension}"',
            "X-Transcript-Version": str(stored["shown"]),
        },
    )


async def edit_segment(request: web.Request) -> web.Response:
    """PATCH {"text", "version"}: 200 {"version": V + 1, "segment": ...}; 409 if V is stale."""
    job = await job_or_404(request)
    number = _int(request.match_info["n"], "the segment number")
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the body must be JSON: {\"text\": ..., \"version\": ...}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    text, version = body.get("text"), body.get("version")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "text must be a non-empty string")
    if len(text) > MAX_EDIT_CHARS:
        raise ApiError(400, f"text is longer than {MAX_EDIT_CHARS} characters")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ApiError(400, "version must be the transcript version the text was read at (>= 1)")
    await _stored(request, job)
    store = request.app[keys.STORE]
    try:
        new_version = await store.edit_segment(job["id"], number or 0, text.strip(), version=version)
    except EditConflict as conflict:
        message = f"the transcript changed since version {version}; reload it and edit again"
        return web.json_response({"error": message, "version": conflict.current}, status=409)
    except LookupError as error:
        raise ApiError(404, str(error)) from None
    current = await store.transcript(job["id"])
    assert current is not None
    segment = next(s for s in current["segments"] if s["id"] == number)
    return web.json_response({"version": new_version, "segment": segment})


async def transcript_history(request: web.Request) -> web.Response:
    job = await job_or_404(request)
    await _stored(request, job)
    versions = await request.app[keys.STORE].transcript_history(job["id"])
    return web.json_response({"versions": versions})


async def search(request: web.Request) -> web.Response:
    """GET /api/search?q=: FTS5 over every stored transcript's current text."""
    query = request.query.get("q", "").strip()
    if not query:
        raise ApiError(400, "q is empty: give words to look for")
    if len(query) > MAX_QUERY_CHARS:
        raise ApiError(400, f"q is longer than {MAX_QUERY_CHARS} characters")
    limit = _int(request.query.get("limit"), "limit", 50) or 50
    try:
        found = await request.app[keys.STORE].search_segments(query, limit=min(limit, 200))
    except SearchQueryError as error:
        raise ApiError(400, f"cannot read the search query: {error}") from None
    return web.json_response(found)
