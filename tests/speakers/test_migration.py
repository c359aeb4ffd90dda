"""Schema version 4 adds the speaker names column; a version 3 database gains it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from server.store import Store
from server.store.migrate import SCHEMA_VERSION


async def test_a_v3_database_gains_speaker_names(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    store = await Store.open(path)
    await store.close()
    # Back to version 3: the same table without the column version 4 added.
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE transcription_jobs DROP COLUMN speaker_names")
    conn.execute(
        "INSERT INTO transcription_jobs (filename, original_path, model, created_at) "
        "VALUES ('old.wav', '/x/old.wav', 'tiny.en', '2026-01-01 00:00:00.000')"
    )
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    store = await Store.open(path)
    try:
        old = (await store.list_jobs())[0]
        assert old["filename"] == "old.wav" and old["speaker_names"] is None
        await store.update_job(old["id"], speaker_names=json.dumps({"A": "Maria"}))
        assert json.loads((await store.get_job(old["id"]))["speaker_names"]) == {"A": "Maria"}  # type: ignore[index]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert list(tmp_path.glob("v3.db.backup-v3-*"))
