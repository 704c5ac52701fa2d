-- Login sessions, the audit log, site kinds, and the indexes the HTTP API's lookups
-- need. Same tables and columns as the SQLite migration of the same version.

-- Substation or line. Sites made by enrolling a gateway start as substations.
ALTER TABLE sites ADD COLUMN kind text NOT NULL DEFAULT 'substation'
    CHECK (kind IN ('substation', 'line'));

-- Login sessions: only the SHA-256 of the bearer token is kept.
CREATE TABLE sessions (
    id           uuid PRIMARY KEY,
    token_hash   text NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    user_id      uuid NOT NULL REFERENCES users (id),
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    from_address text
);

CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_user ON sessions (user_id);

-- A user's tokens, oldest first.
CREATE INDEX api_tokens_user ON api_tokens (user_id, created_at, id);

-- The assets on a structure (also what the foreign key looks up on delete).
CREATE INDEX assets_structure ON assets (site, structure);

-- Every state change that is not an alert action (those are in alert_events): users,
-- tokens, sites, structures, assets, gateways …
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL,
    actor        text NOT NULL,
    action       text NOT NULL,
    target       text NOT NULL,
    from_address text,
    detail       jsonb NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at);
