-- One-time password reset links an admin issues (#21): only the token's SHA-256 is kept;
-- a link works once, until it expires, for an account that is not disabled.
CREATE TABLE password_resets (
    token_hash text PRIMARY KEY CHECK (length(token_hash) = 64),
    user_id    uuid NOT NULL REFERENCES users (id),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE INDEX password_resets_user ON password_resets (user_id);
