-- Model registry and staged rollouts (issue #19). A model is checked (sha256, loaded by
-- ONNX Runtime, its manifest's reference frames run) before it is saved; a rollout
-- names one, its gateways in waves and its abort rule; each gateway's desired model
-- (what /model/set carries, seq growing per gateway) and the last /model/state it
-- reported are kept apart from any rollout, so an undone rollout is one more seq.
CREATE TABLE models (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    bytes           INTEGER NOT NULL CHECK (bytes > 0),
    manifest        TEXT NOT NULL CHECK (json_valid(manifest)),
    check_results   TEXT NOT NULL CHECK (json_valid(check_results)),           -- the reference frames at upload
    download_token  TEXT NOT NULL,
    uploaded_by     TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (name, version)
) STRICT;

CREATE TABLE rollouts (
    id                  TEXT PRIMARY KEY,
    model_id            TEXT NOT NULL REFERENCES models (id),
    target              TEXT NOT NULL CHECK (json_valid(target)),
    waves               TEXT NOT NULL CHECK (json_valid(waves)),       -- gateways per wave, resolved
    current_wave        INTEGER NOT NULL,
    probation_s         INTEGER NOT NULL,
    step_timeout_s      INTEGER NOT NULL,
    abort_failure_ratio REAL NOT NULL,
    min_gateways        INTEGER NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('running', 'paused', 'completed', 'aborted')),
    reason              TEXT,
    created_by          TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
) STRICT;
CREATE INDEX rollouts_by_state ON rollouts (state, created_at);

CREATE TABLE rollout_gateways (
    rollout_id        TEXT NOT NULL REFERENCES rollouts (id),
    site              TEXT NOT NULL,
    gateway           TEXT NOT NULL,
    position          INTEGER NOT NULL,         -- order in the rollout
    wave              INTEGER NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('waiting', 'downloading', 'verifying',
                          'testing', 'probation', 'succeeded', 'failed', 'skipped', 'rolled_back')),
    reason            TEXT,
    seq               INTEGER,                   -- the /model/set seq it was sent
    previous_model_id TEXT,                     -- what it ran before (null: its own file's)
    assigned_at       INTEGER,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (rollout_id, site, gateway),
    FOREIGN KEY (site, gateway) REFERENCES gateways (site, gateway)
) STRICT;
CREATE INDEX rollout_gateways_by_gateway ON rollout_gateways (site, gateway);

CREATE TABLE gateway_models (
    site        TEXT NOT NULL,
    gateway     TEXT NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    model_id    TEXT REFERENCES models (id),    -- null: the gateway's own configuration's
    rollout_id  TEXT,
    probation_s INTEGER NOT NULL,
    issued_at   INTEGER NOT NULL,
    PRIMARY KEY (site, gateway),
    FOREIGN KEY (site, gateway) REFERENCES gateways (site, gateway)
) STRICT;

CREATE TABLE gateway_model_states (
    site        TEXT NOT NULL,
    gateway     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    model_id    TEXT,
    phase       TEXT NOT NULL,
    reason      TEXT,
    running     TEXT CHECK (json_valid(running)),                         -- the model running, {name, version, sha256}
    reported_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (site, gateway),
    FOREIGN KEY (site, gateway) REFERENCES gateways (site, gateway)
) STRICT;
