-- Remote configuration (issue #19): every desired document saved for a gateway, with
-- its version (1, 2, … per gateway, never reused), who saved it and why; and the last
-- /config/state each gateway reported (applied, rejected or rolled back).
CREATE TABLE gateway_configs (
    site        TEXT NOT NULL,
    gateway     TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    document    TEXT NOT NULL,                  -- the agent's TOML
    author      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (site, gateway, version),
    FOREIGN KEY (site, gateway) REFERENCES gateways (site, gateway)
) STRICT;

CREATE TABLE gateway_config_states (
    site             TEXT NOT NULL,
    gateway          TEXT NOT NULL,
    version          INTEGER NOT NULL,          -- the desired version the report answers
    status           TEXT NOT NULL CHECK (status IN ('applied', 'rejected', 'rolled_back')),
    errors           TEXT NOT NULL CHECK (json_valid(errors)),
    applied_version  INTEGER,
    applied_at       INTEGER,
    document         TEXT,                      -- what runs, secrets as (kept)
    reported_at      INTEGER NOT NULL,          -- the report's own ts (gateway clock)
    received_at      INTEGER NOT NULL,
    PRIMARY KEY (site, gateway),
    FOREIGN KEY (site, gateway) REFERENCES gateways (site, gateway)
) STRICT;
