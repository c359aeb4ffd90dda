"""Build a database the way the older tool (before process tracking) left it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

LEGACY_SCHEMA = """
CREATE TABLE transcription_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    filename TEXT,
    original_path TEXT,
    duration_minutes REAL,
    model TEXT,
    processes INTEGER,
    workers INTEGER,
    status TEXT,
    progress REAL,
    output_path TEXT,
    error_message TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    completed_at TIMESTAMP,
    notes TEXT
)
"""

# (filename, duration_minutes, workers, status, progress, error_message, completed_at, notes)
LEGACY_ROWS = [
    ("a.mp3", 2.5, 4, "completed", 100.0, None, "2024-03-01 10:05:00", "first"),
    ("b.wav", 1.0, 2, "pending", 0.0, None, None, None),
    ("c.m4a", 10.0, 8, "processing", 42.0, None, None, "was running"),
    ("d.ogg", 0.5, 1, "failed", 0.3, "model crashed", "2024-03-02 11:00:00", None),
]


def make_legacy_db(path: Path, *, deleted_tail: int = 0) -> None:
    """A legacy database with LEGACY_ROWS; `deleted_tail` extra rows are added then deleted,
    so AUTOINCREMENT's sequence is ahead of the highest id."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(LEGACY_SCHEMA)
        conn.execute("CREATE INDEX idx_status ON transcription_jobs (status)")
        for filename, minutes, workers, status, progress, error, completed, notes in LEGACY_ROWS:
            conn.execute(
                "INSERT INTO transcription_jobs (filename, original_path, duration_minutes, model,"
                " processes, workers, status, progress, output_path, error_message, created_at,"
                " completed_at, notes) VALUES (?, ?, ?, 'base', 2, ?, ?, ?, ?, ?,"
                " '2024-03-01 10:00:00', ?, ?)",
                (
                    filename, f"/uploads/{filename}", minutes, workers, status, progress,
                    f"/out/{filename}", error, completed, notes,
                ),
            )  # fmt: skip
        for _ in range(deleted_tail):
            conn.execute("INSERT INTO transcription_jobs (filename, status) VALUES ('x', 'failed')")
        conn.execute("DELETE FROM transcription_jobs WHERE filename = 'x'")
        conn.commit()
    finally:
        conn.close()


def legacy_rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT * FROM transcription_jobs ORDER BY id").fetchall()
    finally:
        conn.close()


def roll_back(
    path: Path,
    version: int,
    *,
    columns: tuple[str, ...] = (),
    tables: tuple[str, ...] = (),
    triggers: tuple[str, ...] = (),
    status: str = "queued",
) -> None:
    """Turn a fresh database at `path` back into one of schema `version`: drop what the
    later versions added (`triggers`, `tables`, then the jobs table's `columns`) and add
    one job row as that version would have held it."""
    conn = sqlite3.connect(path)
    try:
        for name in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        for name in tables:
            conn.execute(f"DROP TABLE {name}")
        for name in columns:
            conn.execute(f"ALTER TABLE transcription_jobs DROP COLUMN {name}")
        conn.execute(
            "INSERT INTO transcription_jobs (filename, original_path, model, status, created_at) "
            "VALUES ('old.wav', '/x/old.wav', 'tiny.en', ?, '2026-01-01 00:00:00.000')",
            (status,),
        )
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
    finally:
        conn.close()
