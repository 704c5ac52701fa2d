-- Per-channel rate limits (issue #18): a channel sends nothing before `next_send_at`;
-- what waits for it meanwhile goes out as one digest (e-mail, Slack, Teams) or in turn.
CREATE TABLE channel_pacing (
    channel      TEXT PRIMARY KEY,
    next_send_at INTEGER NOT NULL
) STRICT;
