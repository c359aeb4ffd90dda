"""Transcripts in the database: the machine's segments (version 1), each edit as the
next version, and the FTS5 index the search reads (kept in step by schema.sql's triggers)."""

from __future__ import annotations

import html
import json
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite

from server.jobs.state import JobStatus
from server.store.migrate import JOBS_TABLE, NOW_SQL

# Private-use characters around each match in a snippet: no transcript holds them, so the
# snippet can be HTML-escaped whole and only then get its <mark> tags.
_OPEN, _CLOSE = "\ue000", "\ue001"
SEARCH_LIMIT = 50
# Past this many matching segments, hits come newest first instead of ranked.
RANKED_AT_MOST = 2000
_SEGMENT_KEYS = ("start", "end", "text")


class EditConflict(Exception):
    """The edit names a version that is no longer the current one."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the transcript is at version {current}")
        self.current = current


class SearchQueryError(ValueError):
    """FTS5 could not read the query; the message says why."""


def _segment_row(job_id: int, number: int, segment: dict[str, Any]) -> tuple[Any, ...]:
    text = str(segment.get("text", "")).strip()
    rest = {k: v for k, v in segment.items() if k not in _SEGMENT_KEYS}
    start, end = float(segment.get("start") or 0.0), float(segment.get("end") or 0.0)
    return (job_id, number, start, end, text, text, json.dumps(rest, ensure_ascii=False))


def _segment_view(row: dict[str, Any], text: str) -> dict[str, Any]:
    data = json.loads(row["data"])
    edited = text != row["original"]
    return {
        **data,
        "id": row["segment"],
        "start": row["start"],
        "end": row["end"],
        "text": text,
        # The words are the machine's; once the text is edited they no longer match it.
        "words": [] if edited else data.get("words", []),
        "edited": edited,
    }


class TranscriptQueries:
    """The Store's transcript methods; the Store provides the connection plumbing."""

    _write: Callable[[Callable[[aiosqlite.Connection], Awaitable[Any]]], Awaitable[Any]]
    _fetchall: Callable[..., Awaitable[list[dict[str, Any]]]]
    _fetchone: Callable[..., Awaitable[dict[str, Any] | None]]

    async def import_transcript(self, job_id: int, document: dict[str, Any]) -> bool:
        """Store a finished job's transcript.json as version 1; False if it already is."""
        meta = {k: v for k, v in document.items() if k not in ("segments", "text")}
        rows = [_segment_row(job_id, n, s) for n, s in enumerate(document.get("segments", []))]

        async def body(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO transcripts (job_id, version, created_at, meta)"
                f" VALUES (?, 1, {NOW_SQL}, ?)",
                (job_id, json.dumps(meta, ensure_ascii=False)),
            )
            if cursor.rowcount != 1:
                return False
            await db.executemany(
                'INSERT INTO transcript_segments (job_id, segment, start, "end", original, text,'
                " data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return True

        return bool(await self._write(body))

    async def jobs_without_transcript(self, *, limit: int) -> list[dict[str, Any]]:
        """Completed jobs whose transcript is not stored yet, newest first."""
        return await self._fetchall(
            f"""SELECT j.* FROM {JOBS_TABLE} AS j LEFT JOIN transcripts AS t ON t.job_id = j.id
                WHERE j.status = '{JobStatus.COMPLETED}' AND t.job_id IS NULL
                ORDER BY j.id DESC LIMIT ?""",
            (limit,),
        )

    async def transcript_version(self, job_id: int) -> dict[str, Any] | None:
        """{version, created_at, meta} of the job's stored transcript, or None."""
        return await self._fetchone(
            "SELECT version, created_at, meta FROM transcripts WHERE job_id = ?", (job_id,)
        )

    async def transcript(self, job_id: int, version: int | None = None) -> dict[str, Any] | None:
        """The transcript as it read at `version` (default: now), or None if not stored.

        {"version": current, "shown": version shown, "meta": {...}, "segments": [...]};
        raises LookupError for a version that never existed.
        """
        head = await self.transcript_version(job_id)
        if head is None:
            return None
        current = int(head["version"])
        shown = current if version is None else version
        if not 1 <= shown <= current:
            raise LookupError(f"version {shown} does not exist (current: {current})")
        rows = await self._fetchall(
            'SELECT segment, start, "end", original, text, data FROM transcript_segments'
            " WHERE job_id = ? ORDER BY segment",
            (job_id,),
        )
        texts = {r["segment"]: r["text"] for r in rows}
        if shown < current:
            texts = {r["segment"]: r["original"] for r in rows}
            edits = await self._fetchall(
                "SELECT segment, text FROM transcript_edits WHERE job_id = ? AND version <= ?"
                " ORDER BY version",
                (job_id, shown),
            )
            texts.update((e["segment"], e["text"]) for e in edits)
        return {
            "version": current,
            "shown": shown,
            "meta": json.loads(head["meta"]),
            "segments": [_segment_view(r, texts[r["segment"]]) for r in rows],
        }

    async def edit_segment(self, job_id: int, segment: int, text: str, *, version: int) -> int:
        """Set one segment's text as of `version`; returns the new version.

        Raises EditConflict if `version` is not the current one, LookupError if the job has
        no stored transcript or no such segment. Check and write are one transaction.
        """

        async def body(db: aiosqlite.Connection) -> int:
            head = list(
                await db.execute_fetchall(
                    "SELECT version FROM transcripts WHERE job_id = ?", (job_id,)
                )
            )
            if not head:
                raise LookupError(f"job {job_id} has no transcript to edit")
            current = int(head[0][0])
            if version != current:
                raise EditConflict(current)
            found = list(
                await db.execute_fetchall(
                    "SELECT text FROM transcript_segments WHERE job_id = ? AND segment = ?",
                    (job_id, segment),
                )
            )
            if not found:
                raise LookupError(f"job {job_id} has no segment {segment}")
            await db.execute(
                "UPDATE transcript_segments SET text = ? WHERE job_id = ? AND segment = ?",
                (text, job_id, segment),
            )
            await db.execute(
                "INSERT INTO transcript_edits (job_id, version, segment, previous, text,"
                f" created_at) VALUES (?, ?, ?, ?, ?, {NOW_SQL})",
                (job_id, current + 1, segment, found[0][0], text),
            )
            await db.execute(
                "UPDATE transcripts SET version = ? WHERE job_id = ?", (current + 1, job_id)
            )
            return current + 1

        return int(await self._write(body))

    async def transcript_history(self, job_id: int) -> list[dict[str, Any]] | None:
        """One entry per version, oldest first; version 1 is the machine's own output."""
        head = await self.transcript_version(job_id)
        if head is None:
            return None
        edits = await self._fetchall(
            "SELECT version, created_at, segment, previous, text FROM transcript_edits"
            " WHERE job_id = ? ORDER BY version",
            (job_id,),
        )
        first = {"version": 1, "created_at": head["created_at"], "source": "transcription"}
        return [first, *({**e, "source": "edit"} for e in edits)]

    async def search_segments(self, query: str, *, limit: int = SEARCH_LIMIT) -> dict[str, Any]:
        """{"hits": segments whose current text matches the FTS5 query, "order": how}.

        Best match first (bm25) when the query matches up to RANKED_AT_MOST segments; past
        that, newest first: bm25 must score every match before sorting (~70 ms for 75,000
        segments), and a word in most segments ranks them all nearly alike anyway.
        Raises SearchQueryError (with FTS5's reason) for a query it cannot parse.
        """
        try:
            counted = await self._fetchone(
                "SELECT count(*) AS n FROM (SELECT rowid FROM transcript_search"
                " WHERE transcript_search MATCH ? LIMIT ?)",
                (query, RANKED_AT_MOST + 1),
            )
            order = "rank" if counted is not None and counted["n"] <= RANKED_AT_MOST else "newest"
            rows = await self._fetchall(
                f"""SELECT s.job_id, j.filename, s.segment, s.start, s."end",
                       snippet(transcript_search, 0, '{_OPEN}', '{_CLOSE}', '…', 16) AS raw
                FROM transcript_search
                JOIN transcript_segments AS s ON s.id = transcript_search.rowid
                JOIN transcription_jobs AS j ON j.id = s.job_id
                WHERE transcript_search MATCH ?
                ORDER BY {"rank" if order == "rank" else "transcript_search.rowid DESC"} LIMIT ?""",
                (query, limit),
            )
        except sqlite3.OperationalError as error:
            raise SearchQueryError(str(error)) from None
        for row in rows:
            raw = html.escape(row.pop("raw"), quote=False)
            row["snippet"] = raw.replace(_OPEN, "<mark>").replace(_CLOSE, "</mark>")
        return {"hits": rows, "order": order}
