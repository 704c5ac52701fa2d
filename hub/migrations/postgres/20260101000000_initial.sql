-- Chitti hub store, Postgres (the fleet store). Same tables and columns as the SQLite
-- schema, with native types: timestamptz, uuid, bytea, jsonb.
--
-- `findings` is deliberately NOT partitioned yet. Partitioning by month on received_at
-- would force the primary key to (id, received_at); a resent finding gets a new
-- received_at, so ON CONFLICT (id) could no longer deduplicate it and exactly-once
-- would be lost. When the table needs partitions, partition BY RANGE (id): a UUIDv7
-- starts with its 48-bit millisecond timestamp, so month boundaries are id bounds, the
-- primary key stays (id) and ON CONFLICT (id) keeps working (plus a DEFAULT partition
-- for agents whose clock is wrong).

CREATE TABLE sites (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL
);

-- Bays (in a substation) and towers (on a line), under a site.
CREATE TABLE structures (
    site        text NOT NULL REFERENCES sites (id),
    id          text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('bay', 'tower')),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (site, id)
);

CREATE TABLE assets (
    site            text NOT NULL REFERENCES sites (id),
    id              text NOT NULL,
    structure       text,
    name            text NOT NULL,
    phase           text CHECK (phase IN ('A', 'B', 'C')),
    component_class text,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (site, id),
    FOREIGN KEY (site, structure) REFERENCES structures (site, id)
);

CREATE TABLE evidence (
    sha256       text PRIMARY KEY CHECK (length(sha256) = 64),
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    content_type text NOT NULL,
    location     text NOT NULL,
    created_at   timestamptz NOT NULL
);

-- Enrolled gateways. The MQTT username is '{site}/{gateway}'.
CREATE TABLE gateways (
    site             text NOT NULL REFERENCES sites (id),
    gateway          text NOT NULL,
    password_hash    text NOT NULL,
    public_key       bytea NOT NULL CHECK (length(public_key) = 32),   -- Ed25519
    created_at       timestamptz NOT NULL,
    revoked_at       timestamptz,
    online           boolean NOT NULL DEFAULT false,
    last_seen_at     timestamptz,
    status_at        timestamptz,
    agent_version    text,
    config_version   bigint,
    model            jsonb,
    buffer_depth     bigint,
    buffer_bytes     bigint,
    buffer_oldest_at timestamptz,
    evicted_evidence bigint,
    evicted_findings bigint,
    cameras          jsonb,
    last_status      jsonb,
    PRIMARY KEY (site, gateway)
);

CREATE TABLE cameras (
    site          text NOT NULL,
    gateway       text NOT NULL,
    camera        text NOT NULL,
    state         text NOT NULL,
    fps           double precision NOT NULL,
    last_frame_at timestamptz,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (site, gateway, camera),
    FOREIGN KEY (site, gateway) REFERENCES gateways (site, gateway)
);

-- No foreign keys on purpose: ingest must never refuse (and so never fail to
-- acknowledge) a finding because its site, asset or evidence is not known yet.
CREATE TABLE findings (
    id                uuid PRIMARY KEY,
    site              text NOT NULL,
    gateway           text NOT NULL,
    camera            text NOT NULL,
    asset             text,
    preset            text,
    captured_at       timestamptz NOT NULL,
    captured_offset_s integer NOT NULL,
    observed_at       timestamptz NOT NULL,
    received_at       timestamptz NOT NULL,
    batch_id          uuid NOT NULL,
    source            text NOT NULL CHECK (source IN ('stream', 'rjpeg', 'upload')),
    severity_level    smallint NOT NULL,
    severity_table    text NOT NULL,
    cool_exception    boolean NOT NULL,
    component_class   text,
    max_c             double precision NOT NULL,
    track_id          uuid NOT NULL,
    track_state       text NOT NULL CHECK (track_state IN ('raised', 'updated', 'cleared')),
    historical        boolean NOT NULL,
    evidence_sha256   text,
    doc               jsonb NOT NULL
);

CREATE INDEX findings_received ON findings (received_at DESC, id DESC);
CREATE INDEX findings_site_received ON findings (site, received_at DESC, id DESC);
CREATE INDEX findings_gateway_received ON findings (gateway, received_at DESC, id DESC);
CREATE INDEX findings_asset_received ON findings (asset, received_at DESC, id DESC)
    WHERE asset IS NOT NULL;
CREATE INDEX findings_level_received ON findings (severity_level, received_at DESC, id DESC);
CREATE INDEX findings_track ON findings (site, gateway, camera, track_id);
CREATE INDEX findings_evidence ON findings (evidence_sha256) WHERE evidence_sha256 IS NOT NULL;

CREATE TABLE alerts (
    id                uuid PRIMARY KEY,
    site              text NOT NULL,
    gateway           text NOT NULL,
    camera            text NOT NULL,
    track_id          uuid NOT NULL,
    asset             text,
    component_class   text,
    severity_table    text NOT NULL,
    status            text NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'acknowledged', 'resolved')),
    worst_level       smallint NOT NULL,
    worst_max_c       double precision NOT NULL,
    last_level        smallint NOT NULL,
    last_max_c        double precision NOT NULL,
    first_finding_id  uuid NOT NULL,
    first_finding_at  timestamptz NOT NULL,
    last_finding_id   uuid NOT NULL,
    last_finding_at   timestamptz NOT NULL,
    finding_count     bigint NOT NULL CHECK (finding_count > 0),
    cleared_at        timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    status_changed_at timestamptz,
    UNIQUE (site, gateway, camera, track_id)
);

CREATE INDEX alerts_created ON alerts (created_at DESC, id DESC);
CREATE INDEX alerts_site_created ON alerts (site, created_at DESC, id DESC);
CREATE INDEX alerts_status_created ON alerts (status, created_at DESC, id DESC);

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at    timestamptz NOT NULL,
    disabled_at   timestamptz
);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    token_hash   text NOT NULL UNIQUE,
    user_id      uuid NOT NULL REFERENCES users (id),
    name         text NOT NULL,
    scopes       text NOT NULL,
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

CREATE TABLE alert_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id     uuid NOT NULL REFERENCES alerts (id),
    kind         text NOT NULL
                 CHECK (kind IN ('acknowledge', 'resolve', 'reopen', 'comment', 'assign')),
    actor        text NOT NULL,
    at           timestamptz NOT NULL,
    from_address text,
    note         text,
    detail       jsonb
);

CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

CREATE TABLE telemetry_minutes (
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

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL,
    topic       text NOT NULL,
    reason      text NOT NULL,
    payload     bytea NOT NULL
);

CREATE INDEX dead_letters_received ON dead_letters (received_at DESC, id DESC);
