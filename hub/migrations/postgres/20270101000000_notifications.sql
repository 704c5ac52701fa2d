-- Notifications (issue #18): the transitions of alerts that matter to people, the
-- messages they cause (an outbox, written in the same transaction as the change), and
-- the escalations waiting for someone to act. Senders on several replicas claim rows
-- with FOR UPDATE SKIP LOCKED.
--
-- `notified_level`: the worst level an alert has been announced at (NULL: never), so
-- a finding stream at 30 per second makes one `level_up` per new level, not one per
-- finding.
ALTER TABLE alerts ADD COLUMN notified_level smallint;

CREATE TABLE alert_transitions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id   uuid NOT NULL REFERENCES alerts (id),
    kind       text NOT NULL CHECK (kind IN
               ('raised', 'level_up', 'acknowledged', 'resolved', 'reopened', 'escalated')),
    level      smallint NOT NULL,
    step       integer NOT NULL DEFAULT 0,
    actor      text NOT NULL,
    at         timestamptz NOT NULL,
    routed_at  timestamptz
);

CREATE INDEX alert_transitions_unrouted ON alert_transitions (id) WHERE routed_at IS NULL;
CREATE INDEX alert_transitions_alert ON alert_transitions (alert_id, id);

CREATE TABLE escalations (
    alert_id      uuid NOT NULL REFERENCES alerts (id),
    rule          text NOT NULL,
    next_step     integer NOT NULL,
    due_at        timestamptz NOT NULL,
    started_at    timestamptz NOT NULL,
    stopped_at    timestamptz,
    stopped_by    text,
    PRIMARY KEY (alert_id, rule)
);

CREATE INDEX escalations_due ON escalations (due_at) WHERE stopped_at IS NULL;

CREATE TABLE notifications (
    id              uuid PRIMARY KEY,
    alert_id        uuid NOT NULL REFERENCES alerts (id),
    transition_id   bigint NOT NULL REFERENCES alert_transitions (id),
    channel         text NOT NULL,
    rule            text NOT NULL,
    step            integer NOT NULL,
    message         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    claimed_until   timestamptz,
    last_status     integer,
    last_error      text,
    sent_at         timestamptz,
    UNIQUE (transition_id, channel, step)
);

CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_alert ON notifications (alert_id, created_at);
CREATE INDEX notifications_status ON notifications (status, created_at DESC);

CREATE TABLE disabled_channels (
    channel     text PRIMARY KEY,
    disabled_at timestamptz NOT NULL,
    reason      text NOT NULL
);
