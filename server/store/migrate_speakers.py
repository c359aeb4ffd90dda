"""Schema step for speaker names (issue 25), kept out of migrate.py, which is near its size."""

from __future__ import annotations

import sqlite3

from server.store.schema import JOBS_TABLE


def migrate_v4(conn: sqlite3.Connection, now: str) -> None:
    """Version 4 -> 5: the names people gave a job's speakers (JSON: label -> name)."""
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({JOBS_TABLE})")}
    if "speaker_names" not in have:
        conn.execute(f'ALTER TABLE {JOBS_TABLE} ADD COLUMN "speaker_names" TEXT')
