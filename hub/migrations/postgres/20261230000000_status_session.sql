-- Replay protection for signed statuses: the agent session (process start, gateway
-- clock) of the newest status applied. A Last Will is applied only for this session or
-- a newer one; any other status only when its ts is newer than status_at.
ALTER TABLE gateways ADD COLUMN status_session_at timestamptz;
