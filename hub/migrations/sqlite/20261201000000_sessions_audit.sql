-- Login sessions, the audit log, site kinds, and the indexes the HTTP API's lookups
-- need. Same conventions as the initial migration (STRICT, integer microseconds, BLOB
-- uuids); the Postgres migration of the same version has the same tables and columns.

-- Substation or line. Sites made by enrolling a gateway start as substations.
ALTER TABLE sites ADD COLUMN kind TEXT NOT NULL DEFAULT 'substation'
    CHECK (kind IN ('substation', 'line'));

-- Login sessions: only the SHA-256 of the bearer token is kept.
CREATE TABLE sessions (
    id           BLOB PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    user_id      BLOB NOT NULL REFERENCES users (id),
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    from_address TEXT
) STRICT;

CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_user ON sessions (user_id);

-- A user's tokens, oldest first.
CREATE INDEX api_tokens_user ON api_tokens (user_id, created_at, id);

-- The assets on a structure (also what the foreign key looks up on delete).
CREATE INDEX assets_structure ON assets (site, structure);

-- Every state change that is not an alert action (those are in alert_events): users,
-- tokens, sites, structures, assets, gateways …
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    from_address TEXT,
    detail       TEXT NOT NULL CHECK (json_valid(detail))
) STRICT;

CREATE INDEX audit_log_at ON audit_log (at);
