-- Channels and rules edited by admins through the API and the dashboard (issue #18),
-- beside the hub file's [notifications]: one versioned document (a stale edit is
-- refused), with who changed it last. The audit log keeps every change.
CREATE TABLE notification_settings (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    document    jsonb NOT NULL,                  -- {"channels": [...], "rules": [...]}
    version     bigint NOT NULL,
    updated_by  TEXT NOT NULL,
    updated_at  timestamptz NOT NULL
);
