"""Schema version 5 adds the speaker names column; a version 4 database gains it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from server.store import Store
from server.store.migrate import SCHEMA_VERSION
from tests.helpers.legacy_db import roll_back


async def test_a_v4_database_gains_speaker_names(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    store = await Store.open(path)
    await store.close()
    # Back to version 4: the same table without the column version 5 added.
    roll_back(path, 4, columns=("speaker_names",))
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
    assert list(tmp_path.glob("v4.db.backup-v4-*"))
