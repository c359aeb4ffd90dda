-- The current schema of the transcriptor database, complete (PRAGMA user_version = 3).
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
