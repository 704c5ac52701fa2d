-- Retention (#21): telemetry rolled up from minutes into hours, holds that keep
-- findings past their retention, a lease so that one replica runs the job at a time, and
-- a record of every run. Times are integer microseconds, as everywhere.

CREATE TABLE telemetry_hours (
    site              TEXT NOT NULL,
    gateway           TEXT NOT NULL,
    bucket_start      INTEGER NOT NULL,        -- the hour
    samples           INTEGER NOT NULL,
    cpu_temp_sum      REAL NOT NULL DEFAULT 0,
    cpu_temp_n        INTEGER NOT NULL DEFAULT 0,
    cpu_temp_max      REAL,
    gpu_temp_sum      REAL NOT NULL DEFAULT 0,
    gpu_temp_n        INTEGER NOT NULL DEFAULT 0,
    gpu_temp_max      REAL,
    disk_free_min     INTEGER,
    latency_sum       REAL NOT NULL DEFAULT 0,
    latency_n         INTEGER NOT NULL DEFAULT 0,
    latency_max       REAL,
    frame_drops       INTEGER NOT NULL,
    first_ts          INTEGER NOT NULL,
    last_ts           INTEGER NOT NULL,
    PRIMARY KEY (site, gateway, bucket_start)
) STRICT;

CREATE INDEX telemetry_minutes_bucket ON telemetry_minutes (bucket_start);
CREATE INDEX telemetry_hours_bucket ON telemetry_hours (bucket_start);

CREATE TABLE retention_holds (
    id          BLOB PRIMARY KEY CHECK (length(id) = 16),
    kind        TEXT NOT NULL CHECK (kind IN ('legal_hold', 'kept_report')),
    site        TEXT,
    asset       TEXT,
    from_at     INTEGER,
    until_at    INTEGER,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    released_by TEXT,
    released_at INTEGER
) STRICT;

CREATE TABLE job_leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL
) STRICT;

CREATE TABLE retention_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    holder      TEXT NOT NULL,
    removed     TEXT NOT NULL CHECK (json_valid(removed)),
    usage       TEXT NOT NULL CHECK (json_valid(usage)),
    error       TEXT
) STRICT;

CREATE INDEX evidence_created ON evidence (created_at);
CREATE INDEX alert_events_verified_fixed
    ON alert_events (json_extract(detail, '$.verified_fixed_sha256'))
    WHERE json_extract(detail, '$.verified_fixed_sha256') IS NOT NULL;
CREATE INDEX alerts_last_finding ON alerts (last_finding_at) WHERE status = 'resolved';
