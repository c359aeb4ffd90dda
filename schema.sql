-- The current schema of the transcriptor database, complete (PRAGMA user_version = 5).
-- server/store.py runs this on a new database and migrates older ones up to it.
-- Timestamps are UTC text 'YYYY-MM-DD HH:MM:SS.SSS' (strftime('%Y-%m-%d %H:%M:%f', 'now')),
-- so they sort as text and julianday()/datetime() read them.

-- One row, written when the database is created: install_id goes into each job's
-- environment marker, so two installs on one machine never confuse each other's processes.
CREATE TABLE meta (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    install_id  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- Each server start registers itself; a job names the instance that owns it, so a restarted
-- server can tell its predecessor's jobs (the predecessor's pid identity is gone) from its own.
CREATE TABLE server_instances (
    id          TEXT PRIMARY KEY,          -- uuid4 hex
    pid         INTEGER NOT NULL,
    start_ticks INTEGER NOT NULL,          -- field 22 of /proc/PID/stat
    boot_id     TEXT NOT NULL,             -- /proc/sys/kernel/random/boot_id
    started_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);

-- The name older installs use, kept so their databases upgrade in place.
CREATE TABLE transcription_jobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    filename            TEXT NOT NULL,                 -- as uploaded
    original_path       TEXT NOT NULL,                 -- where the server stored it
    duration_seconds    REAL,
    model               TEXT NOT NULL,
    language            TEXT,
    processes           INTEGER NOT NULL DEFAULT 1,
    threads             INTEGER NOT NULL DEFAULT 1,
    chunk_seconds       REAL,
    overlap_seconds     REAL,
    status              TEXT NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    progress            REAL NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    -- Who runs it: the group leader, its group, and its identity (pid numbers get reused).
    process_id          INTEGER,
    process_group_id    INTEGER,
    process_start_ticks INTEGER,                       -- field 22 of /proc/PID/stat
    process_boot_id     TEXT,
    instance_id         TEXT,                          -- server_instances.id of the owner
    log_file_path       TEXT,
    output_path         TEXT,                          -- the job's output folder
    last_heartbeat      TEXT,
    created_at          TEXT NOT NULL,
    started_at          TEXT,
    finished_at         TEXT,
    exit_code           INTEGER,
    error_message       TEXT,
    cancel_reason       TEXT,
    on_disconnect       TEXT NOT NULL DEFAULT 'cancel' CHECK (on_disconnect IN ('cancel', 'keep')),
    source              TEXT,                          -- NULL: pages or CLI; 'api: openai'
    pipeline_options    TEXT,                          -- more pipeline flags as JSON, or NULL
    -- Where it runs: NULL or 'local' (a process group here), or 'ray' (a Ray job).
    executor            TEXT,
    ray_submission_id   TEXT,                          -- never reused: a retry gets a new one
    ray_node            TEXT,                          -- the node running its entrypoint
    job_secret_hash     TEXT,                          -- sha256 of the node's one-time secret
    webhook_url         TEXT,                          -- the uploader's own webhook, or NULL
    retry_of            INTEGER,                       -- the job this one retries, or NULL
    settled_at          TEXT,                          -- when its ending's aftercare was done
    speaker_names       TEXT                           -- JSON label -> name a person gave, or NULL
);

CREATE INDEX transcription_jobs_status ON transcription_jobs (status, id);

-- Each job's resource history, sampled by the monitor.
CREATE TABLE job_metrics (
    id            INTEGER PRIMARY KEY,
    job_id        INTEGER NOT NULL REFERENCES transcription_jobs (id) ON DELETE CASCADE,
    time          TEXT NOT NULL,
    cpu_percent   REAL NOT NULL,
    memory_mb     REAL NOT NULL,
    num_processes INTEGER NOT NULL
);

CREATE INDEX job_metrics_job ON job_metrics (job_id, id);

-- A finished job's transcript, read in from its transcript.json once it completes, so
-- edits, history and search live in the database. Version 1 is the machine's output;
-- each edit makes the next version.
CREATE TABLE transcripts (
    job_id      INTEGER PRIMARY KEY REFERENCES transcription_jobs (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    meta        TEXT NOT NULL                      -- transcript.json less its segments, JSON
);

CREATE TABLE transcript_segments (
    id          INTEGER PRIMARY KEY,               -- also the rowid of its search entry
    job_id      INTEGER NOT NULL REFERENCES transcripts (job_id) ON DELETE CASCADE,
    segment     INTEGER NOT NULL,                  -- 0-based position: the n of the API
    start       REAL NOT NULL,
    "end"       REAL NOT NULL,
    original    TEXT NOT NULL,                     -- the machine's text (version 1)
    text        TEXT NOT NULL,                     -- the current text
    data        TEXT NOT NULL,                     -- the rest of the segment (words...), JSON
    UNIQUE (job_id, segment)
);

-- One row per edit: the version it made, and the text before and after.
CREATE TABLE transcript_edits (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES transcripts (job_id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    segment     INTEGER NOT NULL,
    previous    TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (job_id, version)
);

-- Full-text search over the current text of every segment (external content: the text
-- is stored once, in transcript_segments; the triggers keep the index in step).
CREATE VIRTUAL TABLE transcript_search USING fts5 (
    text, content = 'transcript_segments', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER transcript_segments_ai AFTER INSERT ON transcript_segments BEGIN
    INSERT INTO transcript_search (rowid, text) VALUES (new.id, new.text);
END;

CREATE TRIGGER transcript_segments_ad AFTER DELETE ON transcript_segments BEGIN
    INSERT INTO transcript_search (transcript_search, rowid, text)
        VALUES ('delete', old.id, old.text);
END;

CREATE TRIGGER transcript_segments_au AFTER UPDATE OF text ON transcript_segments BEGIN
    INSERT INTO transcript_search (transcript_search, rowid, text)
        VALUES ('delete', old.id, old.text);
    INSERT INTO transcript_search (rowid, text) VALUES (new.id, new.text);
END;

-- A webhook POST waiting to be delivered, delivered, or given up on. Queued here, so a
-- restart neither loses nor repeats a delivery that was due.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    job_id          INTEGER NOT NULL REFERENCES transcription_jobs (id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,                 -- the JSON sent, signed as it is
    attempts        INTEGER NOT NULL DEFAULT 0,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'gave_up')),
    next_attempt_at TEXT NOT NULL,
    created_at      TEXT NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);

-- Every attempt at a delivery: the answer's status code, or the error that stopped it.
CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    job_id      INTEGER NOT NULL REFERENCES transcription_jobs (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    status_code INTEGER,
    error       TEXT,
    at          TEXT NOT NULL
);

CREATE INDEX webhook_attempts_job ON webhook_attempts (job_id, id);
