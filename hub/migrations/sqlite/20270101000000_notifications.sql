-- Notifications (issue #18): the transitions of alerts that matter to people, the
-- messages they cause (an outbox, written in the same transaction as the change), and
-- the escalations waiting for someone to act.
--
-- `notified_level`: the worst level an alert has been announced at (NULL: never), so
-- a finding stream at 30 per second makes one `level_up` per new level, not one per
-- finding.
ALTER TABLE alerts ADD COLUMN notified_level INTEGER;

CREATE TABLE alert_transitions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id   BLOB NOT NULL REFERENCES alerts (id),
    kind       TEXT NOT NULL CHECK (kind IN
               ('raised', 'level_up', 'acknowledged', 'resolved', 'reopened', 'escalated')),
    level      INTEGER NOT NULL,
    step       INTEGER NOT NULL DEFAULT 0,     -- escalation step (1 = first escalation)
    actor      TEXT NOT NULL,
    at         INTEGER NOT NULL,
    routed_at  INTEGER                         -- NULL: rules not yet applied
) STRICT;

CREATE INDEX alert_transitions_unrouted ON alert_transitions (id) WHERE routed_at IS NULL;
CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id, id);

-- One escalation per alert and rule; stopped when the alert is acknowledged or
-- resolved, or when its steps are spent.
CREATE TABLE escalations (
    alert_id      BLOB NOT NULL REFERENCES alerts (id),
    rule          TEXT NOT NULL,
    next_step     INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    stopped_at    INTEGER,
    stopped_by    TEXT,
    PRIMARY KEY (alert_id, rule)
) STRICT;

CREATE INDEX escalations_due ON escalations (due_at) WHERE stopped_at IS NULL;

CREATE TABLE notifications (
    id              BLOB PRIMARY KEY,            -- webhook-id, Message-ID: same on every retry
    alert_id        BLOB NOT NULL REFERENCES alerts (id),
    transition_id   INTEGER NOT NULL REFERENCES alert_transitions (id),
    channel         TEXT NOT NULL,
    rule            TEXT NOT NULL,
    step            INTEGER NOT NULL,
    message         TEXT NOT NULL,               -- JSON, rendered per channel at send time
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_until   INTEGER,
    last_status     INTEGER,                     -- HTTP status or SMTP reply code
    last_error      TEXT,
    sent_at         INTEGER,
    UNIQUE (transition_id, channel, step)
) STRICT;

CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_alert ON notifications (alert_id, created_at);
CREATE INDEX notifications_status ON notifications (status, created_at DESC);

-- Channels the hub stopped sending to (a webhook that answered 410 Gone).
CREATE TABLE disabled_channels (
    channel     TEXT PRIMARY KEY,
    disabled_at INTEGER NOT NULL,
    reason      TEXT NOT NULL
) STRICT;
