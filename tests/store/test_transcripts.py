"""Transcripts, edits, search and webhooks in a real SQLite file; the v3 -> v4 upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from server.store import Store
from server.store.transcripts import EditConflict, SearchQueryError
from tests.helpers.legacy_db import make_legacy_db, roll_back

DOCUMENT = {
    "language": "en",
    "duration": 3.0,
    "segments": [
        {"start": 0.0, "end": 1.0, "text": " hello there", "words": [
            {"start": 0.0, "end": 0.4, "word": " hello", "probability": 0.9},
            {"start": 0.5, "end": 1.0, "word": " there", "probability": 0.8}]},
        {"start": 1.0, "end": 2.0, "text": " general kenobi", "words": []},
        {"start": 2.0, "end": 3.0, "text": " you are a bold one", "avg_logprob": -0.2},
    ],
}  # fmt: skip


async def new_job(store: Store, name: str = "a.wav") -> dict[str, Any]:
    return await store.create_job(
        filename=name, original_path=f"/x/{name}", duration_seconds=3.0, model="tiny.en",
        language="en", processes=1, threads=1, chunk_seconds=0, overlap_seconds=3,
    )  # fmt: skip


def schema(path: Path) -> dict[str, str]:
    """Each object's definition; the jobs table's as its columns (ALTER TABLE ... ADD COLUMN
    leaves other text in sqlite_master than the fresh CREATE TABLE, same columns)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
        columns = conn.execute("PRAGMA table_info(transcription_jobs)").fetchall()
    finally:
        conn.close()
    found = {name: " ".join(sql.split()) for name, sql in rows}
    found["transcription_jobs"] = repr(sorted(c[1:] for c in columns))
    return found


async def test_versions_history_and_the_original(store: Store) -> None:
    job = await new_job(store)
    assert await store.import_transcript(job["id"], DOCUMENT)
    assert not await store.import_transcript(job["id"], DOCUMENT)  # once only
    first = await store.transcript(job["id"])
    assert first is not None and first["version"] == 1
    assert [s["text"] for s in first["segments"]] == ["hello there", "general kenobi", "you are a bold one"]
    assert first["segments"][2]["avg_logprob"] == -0.2  # the decoder's fields are kept

    assert await store.edit_segment(job["id"], 1, "General Kenobi!", version=1) == 2
    assert await store.edit_segment(job["id"], 1, "General Kenobi.", version=2) == 3
    assert await store.edit_segment(job["id"], 0, "Hello there.", version=3) == 4
    with pytest.raises(EditConflict) as conflict:
        await store.edit_segment(job["id"], 2, "stale", version=2)
    assert conflict.value.current == 4
    with pytest.raises(LookupError):
        await store.edit_segment(job["id"], 7, "no such segment", version=4)

    texts = {}
    for version in (1, 2, 3, 4):
        shown = await store.transcript(job["id"], version)
        assert shown is not None and shown["shown"] == version
        texts[version] = [s["text"] for s in shown["segments"]]
    assert texts[1] == ["hello there", "general kenobi", "you are a bold one"]
    assert texts[2][1] == "General Kenobi!" and texts[3][1] == "General Kenobi."
    assert texts[4] == ["Hello there.", "General Kenobi.", "you are a bold one"]
    now = await store.transcript(job["id"])
    assert now is not None and now["segments"][0]["words"] == []  # edited: the words no longer fit
    assert (await store.transcript(job["id"], 1))["segments"][0]["words"]  # type: ignore[index]
    with pytest.raises(LookupError):
        await store.transcript(job["id"], 5)
    history = await store.transcript_history(job["id"])
    assert history is not None and [h["version"] for h in history] == [1, 2, 3, 4]
    assert history[2]["previous"] == "General Kenobi!" and history[2]["text"] == "General Kenobi."


async def test_search_follows_edits_and_deletes(store: Store) -> None:
    a, b = await new_job(store, "a.wav"), await new_job(store, "b.wav")
    await store.import_transcript(a["id"], DOCUMENT)
    await store.import_transcript(b["id"], DOCUMENT)
    found = await store.search_segments("kenobi")
    assert found["order"] == "rank" and {h["job_id"] for h in found["hits"]} == {a["id"], b["id"]}
    await store.edit_segment(a["id"], 1, "general grievous", version=1)
    assert [h["job_id"] for h in (await store.search_segments("kenobi"))["hits"]] == [b["id"]]
    assert [h["job_id"] for h in (await store.search_segments("grievous"))["hits"]] == [a["id"]]
    with pytest.raises(SearchQueryError):
        await store.search_segments('"unbalanced')
    # Ended jobs only: a queued one refuses to be deleted.
    from server.store.library import JobStateError

    with pytest.raises(JobStateError):
        await store.delete_job(a["id"])
    await store.cancel_job(a["id"], "test")
    deleted = await store.delete_job(a["id"])
    assert deleted is not None and deleted["upload_shared"] is False
    assert (await store.search_segments("grievous"))["hits"] == []
    assert await store.transcript(a["id"]) is None
    conn = sqlite3.connect(store.path)
    try:
        # The FTS index itself holds nothing of the deleted job (not only the join hides it).
        rows = conn.execute("SELECT count(*) FROM transcript_search WHERE transcript_search MATCH 'grievous'")
        assert rows.fetchone()[0] == 0
        assert conn.execute("INSERT INTO transcript_search (transcript_search) VALUES ('integrity-check')")
    finally:
        conn.close()


async def test_webhook_queue_claims_and_records(store: Store) -> None:
    job = await new_job(store)
    assert not await store.settle_job(job["id"], ["http://127.0.0.1:9/a"], "{}")  # not ended yet
    await store.cancel_job(job["id"], "test")
    assert [j["id"] for j in await store.unsettled_jobs()] == [job["id"]]
    assert await store.settle_job(job["id"], ["http://127.0.0.1:9/a"], '{"id": 1}')
    assert not await store.settle_job(job["id"], ["http://127.0.0.1:9/a"], '{"id": 1}')  # once
    assert await store.unsettled_jobs() == []
    (claimed,) = await store.claim_due_webhooks(30.0, limit=5)
    assert await store.claim_due_webhooks(30.0, limit=5) == []  # leased, not claimed twice
    wait = await store.seconds_to_next_webhook()
    assert wait is not None and 25 < wait < 30.01  # julianday keeps about a millisecond
    state = await store.record_webhook_attempt(
        claimed, status_code=503, error=None, delivered=False, retry_in=0
    )
    assert state == "pending"
    (again,) = await store.claim_due_webhooks(30.0, limit=5)
    assert again["attempts"] == 1
    state = await store.record_webhook_attempt(again, status_code=200, error=None, delivered=True)
    assert state == "delivered"
    assert await store.seconds_to_next_webhook() is None
    attempts = await store.webhook_attempts(job["id"])
    assert [a["status_code"] for a in attempts] == [503, 200]


async def test_v3_database_upgrades_to_the_same_schema_as_a_fresh_one(tmp_path: Path) -> None:
    fresh, old = tmp_path / "fresh.db", tmp_path / "v3.db"
    for path in (fresh, old):
        await (await Store.open(path)).close()
    # Back to version 3: without the tables, triggers and columns version 4 added.
    roll_back(
        old,
        3,
        triggers=("transcript_segments_ai", "transcript_segments_ad", "transcript_segments_au"),
        tables=(
            "webhook_attempts", "webhook_deliveries", "transcript_search",
            "transcript_edits", "transcript_segments", "transcripts",
        ),
        columns=("webhook_url", "retry_of", "settled_at"),
        status="completed",
    )
    store = await Store.open(old)
    try:
        (job,) = await store.list_jobs()
        assert job["filename"] == "old.wav" and job["webhook_url"] is None
        assert job["settled_at"] is not None  # ended before webhooks: none owed
        await store.import_transcript(job["id"], DOCUMENT)
        assert (await store.search_segments("bold"))["hits"][0]["job_id"] == job["id"]
    finally:
        await store.close()
    assert list(tmp_path.glob("v3.db.backup-v3-*"))
    assert schema(old) == schema(fresh)


async def test_legacy_database_reaches_version_4(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    make_legacy_db(path)
    store = await Store.open(path)
    try:
        job = (await store.list_jobs())[-1]
        await store.import_transcript(job["id"], DOCUMENT)
        assert (await store.search_segments("kenobi"))["hits"]
    finally:
        await store.close()
    fresh = tmp_path / "fresh.db"
    await (await Store.open(fresh)).close()
    assert set(schema(path)) == set(schema(fresh))
