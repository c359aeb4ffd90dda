"""The schema steps after the first: version N -> N + 1, each its own function.

Each step is idempotent: the v0 upgrade builds its tables from the complete schema.sql,
so a later step finds some of its objects already made and adds only what is missing.
"""

from __future__ import annotations

import sqlite3

from server.jobs.state import FINAL_STATES
from server.store.schema import JOBS_TABLE, add_columns, create_missing

_ENDED = ", ".join(f"'{s.value}'" for s in sorted(FINAL_STATES))


def migrate_v1(conn: sqlite3.Connection, now: str) -> None:
    """Version 1 -> 2: a job's source (the OpenAI API marks its jobs), extra pipeline options."""
    add_columns(conn, {"source": "TEXT", "pipeline_options": "TEXT"})


def migrate_v2(conn: sqlite3.Connection, now: str) -> None:
    """Version 2 -> 3: where a job runs, for jobs on a Ray cluster (issue #17)."""
    names = ("executor", "ray_submission_id", "ray_node", "job_secret_hash")
    add_columns(conn, dict.fromkeys(names, "TEXT"))


# Issue #26's tables, triggers and indexes, created as schema.sql spells them.
_V4_OBJECTS = (
    "transcripts", "transcript_segments", "transcript_edits", "transcript_search",
    "transcript_segments_ai", "transcript_segments_ad", "transcript_segments_au",
    "webhook_deliveries", "webhook_deliveries_due", "webhook_attempts", "webhook_attempts_job",
)  # fmt: skip


def migrate_v3(conn: sqlite3.Connection, now: str) -> None:
    """Version 3 -> 4: transcripts in the database (edits with history, full-text search),
    webhook deliveries and their attempts, a job's own webhook URL, what it retries, and
    when its aftercare (transcript stored, webhooks queued) was done.

    Finished jobs' transcripts are read in from their files by the server once it runs
    (server/jobs/transcripts.py), not here: a migration must not depend on output files.
    """
    add_columns(conn, {"webhook_url": "TEXT", "retry_of": "INTEGER", "settled_at": "TEXT"})
    create_missing(conn, _V4_OBJECTS)
    # Jobs that ended before webhooks existed are settled: none is owed a webhook now.
    conn.execute(
        f"UPDATE {JOBS_TABLE} SET settled_at = ? WHERE settled_at IS NULL AND status IN ({_ENDED})",
        (now,),
    )
