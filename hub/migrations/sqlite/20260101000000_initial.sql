-- Chitti hub store, SQLite (the embedded default).
--
-- Conventions (the Postgres schema has the same tables and columns):
-- * timestamps are INTEGER microseconds since the Unix epoch, UTC. A fixed-width
--   integer sorts and compares correctly, which sqlx's variable-precision RFC 3339
--   text does not; Postgres' timestamptz has the same microsecond precision.
-- * UUIDs are 16-byte BLOBs (sqlx's encoding); UUIDv7 bytes sort by time.
-- * JSON documents are TEXT checked with json_valid().
-- * STRICT tables, so a wrong type is an error rather than a silent conversion.

-- Where equipment is: a substation or a line section.
CREATE TABLE sites (
    id          TEXT PRIMARY KEY,           -- [a-z0-9-]{1,64}, as in topics
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- Bays (in a substation) and towers (on a line), under a site.
CREATE TABLE structures (
    site        TEXT NOT NULL REFERENCES sites (id),
    id          TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('bay', 'tower')),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (site, id)
) STRICT;

-- A piece of equipment a camera or preset looks at (a finding's `asset`).
CREATE TABLE assets (
    site            TEXT NOT NULL REFERENCES sites (id),
    id              TEXT NOT NULL,
    structure       TEXT,
    name            TEXT NOT NULL,
    phase           TEXT CHECK (phase IN ('A', 'B', 'C')),
    component_class TEXT,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (site, id),
    FOREIGN KEY (site, structure) REFERENCES structures (site, id)
) STRICT;

-- Evidence blobs' metadata; the bytes live in the blob store at `location`.
CREATE TABLE evidence (
    sha256       TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    size_bytes   INTEGER NOT NULL CHECK (size_bytes >= 0),
    content_type TEXT NOT NULL,
    location     TEXT NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;

-- Enrolled gateways. The MQTT username is '{site}/{gateway}'.
CREATE TABLE gateways (
    site             TEXT NOT NULL REFERENCES sites (id),
    gateway          TEXT NOT NULL,
    password_hash    TEXT NOT NULL,
    public_key       BLOB NOT NULL CHECK (length(public_key) = 32),   -- Ed25519
    created_at       INTEGER NOT NULL,
    revoked_at       INTEGER,
    -- From the latest /status, in arrival order (see update_gateway_status).
    online           INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1)),
    last_seen_at     INTEGER,                 -- hub clock
    status_at        INTEGER,                 -- the status' own ts (gateway clock)
    agent_version    TEXT,
    config_version   INTEGER,
    model            TEXT CHECK (model IS NULL OR json_valid(model)),
    buffer_depth     INTEGER,
    buffer_bytes     INTEGER,
    buffer_oldest_at INTEGER,
    evicted_evidence INTEGER,
    evicted_findings INTEGER,
    cameras          TEXT CHECK (cameras IS NULL OR json_valid(cameras)),
    last_status      TEXT CHECK (last_status IS NULL OR json_valid(last_status)),
    PRIMARY KEY (site, gateway)
) STRICT;

-- Every camera a gateway has reported, with its latest state.
CREATE TABLE cameras (
    site          TEXT NOT NULL,
    gateway       TEXT NOT NULL,
    camera        TEXT NOT NULL,
    state         TEXT NOT NULL,
    fps           REAL NOT NULL,
    last_frame_at INTEGER,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (site, gateway, camera),
    FOREIGN KEY (site, gateway) REFERENCES gateways (site, gateway)
) STRICT;

-- Findings. No foreign keys on purpose: ingest must never refuse (and so never fail to
-- acknowledge) a finding because its site, asset or evidence is not known yet.
CREATE TABLE findings (
    id                BLOB PRIMARY KEY,        -- UUIDv7 from the agent
    site              TEXT NOT NULL,
    gateway           TEXT NOT NULL,
    camera            TEXT NOT NULL,
    asset             TEXT,
    preset            TEXT,
    captured_at       INTEGER NOT NULL,        -- camera clock, as UTC
    captured_offset_s INTEGER NOT NULL,        -- the camera clock's UTC offset
    observed_at       INTEGER NOT NULL,        -- gateway clock
    received_at       INTEGER NOT NULL,        -- hub clock
    batch_id          BLOB NOT NULL,
    source            TEXT NOT NULL CHECK (source IN ('stream', 'rjpeg', 'upload')),
    severity_level    INTEGER NOT NULL,
    severity_table    TEXT NOT NULL,
    cool_exception    INTEGER NOT NULL CHECK (cool_exception IN (0, 1)),
    component_class   TEXT,
    max_c             REAL NOT NULL,
    track_id          BLOB NOT NULL,
    track_state       TEXT NOT NULL CHECK (track_state IN ('raised', 'updated', 'cleared')),
    historical        INTEGER NOT NULL CHECK (historical IN (0, 1)),
    evidence_sha256   TEXT,
    doc               TEXT NOT NULL CHECK (json_valid(doc))   -- the finding as received
) STRICT;

CREATE INDEX findings_received ON findings (received_at DESC, id DESC);
CREATE INDEX findings_site_received ON findings (site, received_at DESC, id DESC);
CREATE INDEX findings_gateway_received ON findings (gateway, received_at DESC, id DESC);
CREATE INDEX findings_asset_received ON findings (asset, received_at DESC, id DESC)
    WHERE asset IS NOT NULL;
CREATE INDEX findings_level_received ON findings (severity_level, received_at DESC, id DESC);
CREATE INDEX findings_track ON findings (site, gateway, camera, track_id);
CREATE INDEX findings_evidence ON findings (evidence_sha256) WHERE evidence_sha256 IS NOT NULL;

-- One alert per track (site, gateway, camera, track id): what operators act on.
CREATE TABLE alerts (
    id                BLOB PRIMARY KEY,
    site              TEXT NOT NULL,
    gateway           TEXT NOT NULL,
    camera            TEXT NOT NULL,
    track_id          BLOB NOT NULL,
    asset             TEXT,
    component_class   TEXT,
    severity_table    TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'acknowledged', 'resolved')),
    worst_level       INTEGER NOT NULL,
    worst_max_c       REAL NOT NULL,
    last_level        INTEGER NOT NULL,
    last_max_c        REAL NOT NULL,
    first_finding_id  BLOB NOT NULL,
    first_finding_at  INTEGER NOT NULL,        -- observed_at of the earliest finding
    last_finding_id   BLOB NOT NULL,
    last_finding_at   INTEGER NOT NULL,        -- observed_at of the latest finding
    finding_count     INTEGER NOT NULL CHECK (finding_count > 0),
    cleared_at        INTEGER,                 -- observed_at of the first 'cleared' finding
    created_at        INTEGER NOT NULL,        -- hub clock
    updated_at        INTEGER NOT NULL,        -- hub clock
    status_changed_at INTEGER,
    UNIQUE (site, gateway, camera, track_id)
) STRICT;

CREATE INDEX alerts_created ON alerts (created_at DESC, id DESC);
CREATE INDEX alerts_site_created ON alerts (site, created_at DESC, id DESC);
CREATE INDEX alerts_status_created ON alerts (status, created_at DESC, id DESC);

-- People.
CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,               -- argon2 PHC string
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
) STRICT;

-- Integration tokens: only a hash of the token is kept.
CREATE TABLE api_tokens (
    id           BLOB PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      BLOB NOT NULL REFERENCES users (id),
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,                -- space-separated, as OAuth writes them
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
) STRICT;

-- The audit trail of every operator action on an alert.
CREATE TABLE alert_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id     BLOB NOT NULL REFERENCES alerts (id),
    kind         TEXT NOT NULL
                 CHECK (kind IN ('acknowledge', 'resolve', 'reopen', 'comment', 'assign')),
    actor        TEXT NOT NULL,
    at           INTEGER NOT NULL,
    from_address TEXT,
    note         TEXT,
    detail       TEXT CHECK (detail IS NULL OR json_valid(detail))
) STRICT;

CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

-- Telemetry, downsampled to one row per gateway and minute of the sample's own ts.
CREATE TABLE telemetry_minutes (
    site              TEXT NOT NULL,
    gateway           TEXT NOT NULL,
    bucket_start      INTEGER NOT NULL,        -- the minute, truncated
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

-- Messages ingest could not use, kept byte for byte.
CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    topic       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    payload     BLOB NOT NULL
) STRICT;

CREATE INDEX dead_letters_received ON dead_letters (received_at DESC, id DESC);
