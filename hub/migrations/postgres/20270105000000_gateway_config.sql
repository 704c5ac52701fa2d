-- Remote configuration (issue #19): every desired document saved for a gateway, with
-- its version (1, 2, … per gateway, never reused), who saved it and why; and the last
-- /config/state each gateway reported (applied, rejected or rolled back).
CREATE TABLE gateway_configs (
    site        TEXT NOT NULL,
    gateway     TEXT NOT NULL,
    version     bigint NOT NULL CHECK (version > 0),
    document    TEXT NOT NULL,                  -- the agent's TOML
    author      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (site, gateway, version),
    FOREIGN KEY (site, gateway) REFERENCES gateways (site, gateway)
);

CREATE TABLE gateway_config_states (
    site             TEXT NOT NULL,
    gateway          TEXT NOT NULL,
    version          bigint NOT NULL,           -- the desired version the report answers
    status           TEXT NOT NULL CHECK (status IN ('applied', 'rejected', 'rolled_back')),
    errors           jsonb NOT NULL,
    applied_version  bigint,
    applied_at       timestamptz,
    document         TEXT,                      -- what runs, secrets as (kept)
    reported_at      timestamptz NOT NULL,      -- the report's own ts (gateway clock)
    received_at      timestamptz NOT NULL,
    PRIMARY KEY (site, gateway),
    FOREIGN KEY (site, gateway) REFERENCES gateways (site, gateway)
);
