-- API tokens may expire; NULL never expires.
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;

-- Tokens of a disabled user were refused while the user stayed disabled and came back
-- when the user was re-enabled. From now on disabling revokes them; revoke those of
-- users disabled today, so re-enabling revives none.
UPDATE api_tokens t SET revoked_at = u.disabled_at
FROM users u
WHERE u.id = t.user_id AND t.revoked_at IS NULL AND u.disabled_at IS NOT NULL;
