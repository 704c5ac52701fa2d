-- Per-channel rate limits (issue #18): a channel sends nothing before `next_send_at`;
-- what waits for it meanwhile goes out as one digest (e-mail, Slack, Teams) or in turn.
-- Replicas share it: a claim skips the channels that are paced.
CREATE TABLE channel_pacing (
    channel      text PRIMARY KEY,
    next_send_at timestamptz NOT NULL
);
