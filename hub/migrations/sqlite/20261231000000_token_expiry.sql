-- API tokens may expire (microseconds, hub clock); NULL never expires.
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;

-- Tokens of a disabled user were refused while the user stayed disabled and came back
-- when the user was re-enabled. From now on disabling revokes them; revoke those of
-- users disabled today, so re-enabling revives none.
UPDATE api_tokens SET revoked_at = (SELECT disabled_at FROM users WHERE users.id = api_tokens.user_id)
WHERE revoked_at IS NULL
  AND user_id IN (SELECT id FROM users WHERE disabled_at IS NOT NULL);
