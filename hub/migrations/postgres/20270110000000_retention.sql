-- Retention (#21): telemetry rolled up from minutes into hours, holds that keep
-- findings past their retention, a lease so that one replica runs the job at a time, and
-- a record of every run.

CREATE TABLE telemetry_hours (
    site              text NOT NULL,
    gateway           text NOT NULL,
    bucket_start      timestamptz NOT NULL,
    samples           bigint NOT NULL,
    cpu_temp_sum      double precision NOT NULL DEFAULT 0,
    cpu_temp_n        bigint NOT NULL DEFAULT 0,
    cpu_temp_max      double precision,
    gpu_temp_sum      double precision NOT NULL DEFAULT 0,
    gpu_temp_n        bigint NOT NULL DEFAULT 0,
    gpu_temp_max      double precision,
    disk_free_min     bigint,
    latency_sum       double precision NOT NULL DEFAULT 0,
    latency_n         bigint NOT NULL DEFAULT 0,
    latency_max       double precision,
    frame_drops       bigint NOT NULL,
    first_ts          timestamptz NOT NULL,
    last_ts           timestamptz NOT NULL,
    PRIMARY KEY (site, gateway, bucket_start)
);

-- The rollup and the expiry walk minutes and hours by time.
CREATE INDEX telemetry_minutes_bucket ON telemetry_minutes (bucket_start);
CREATE INDEX telemetry_hours_bucket ON telemetry_hours (bucket_start);

-- A legal hold or a kept inspection report: the findings it covers (site, asset and
-- observation time, each optional) are never removed while it is not released.
CREATE TABLE retention_holds (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('legal_hold', 'kept_report')),
    site        text,
    asset       text,
    from_at     timestamptz,
    until_at    timestamptz,
    reason      text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL,
    released_by text,
    released_at timestamptz
);

-- Who runs a singleton job (retention) until when; another replica takes it over once
-- the lease lapses.
CREATE TABLE job_leases (
    name   text PRIMARY KEY,
    holder text NOT NULL,
    until  timestamptz NOT NULL
);

-- Every retention run: what it removed, or why it failed.
CREATE TABLE retention_runs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    holder      text NOT NULL,
    removed     jsonb NOT NULL,
    usage       jsonb NOT NULL,
    error       text
);

-- Evidence is collected by age; "verified fixed" evidence is referenced from trails.
CREATE INDEX evidence_created ON evidence (created_at);
CREATE INDEX alert_events_verified_fixed ON alert_events ((detail->>'verified_fixed_sha256'))
    WHERE detail ? 'verified_fixed_sha256';
CREATE INDEX alerts_last_finding ON alerts (last_finding_at) WHERE status = 'resolved';
