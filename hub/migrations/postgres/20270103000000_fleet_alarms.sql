-- Fleet alarms (issue #18): alerts the hub raises about the fleet itself live in
-- `alerts` beside thermal ones, in the same lifecycle and queue. They have no finding,
-- so the thermal columns become nullable (the SQLite schema rebuilds its table to the
-- same shape).
--
-- `kind`: `hotspot` (a thermal track, cool exceptions included) or a fleet kind.
-- `detail`: what the hub saw, for a fleet alarm ("no status or telemetry for 130 s").
-- For a fleet alarm, `first_finding_at` is when the condition began, `last_finding_at`
-- when it was last seen to hold, `cleared_at` when it ended, `finding_count` 0.
ALTER TABLE alerts
    ALTER COLUMN severity_table DROP NOT NULL,
    ALTER COLUMN worst_max_c DROP NOT NULL,
    ALTER COLUMN last_max_c DROP NOT NULL,
    ALTER COLUMN first_finding_id DROP NOT NULL,
    ALTER COLUMN last_finding_id DROP NOT NULL,
    DROP CONSTRAINT alerts_finding_count_check,
    ADD CONSTRAINT alerts_finding_count_check CHECK (finding_count >= 0),
    ADD COLUMN kind text NOT NULL DEFAULT 'hotspot' CHECK (kind IN
        ('hotspot', 'gateway_offline', 'camera_stalled', 'outbox_pressure',
         'detector_degraded', 'evidence_upload_failing', 'clock_skew')),
    ADD COLUMN detail text,
    ADD CONSTRAINT alerts_hotspot_complete CHECK (kind <> 'hotspot' OR (
        severity_table IS NOT NULL AND worst_max_c IS NOT NULL AND last_max_c IS NOT NULL
        AND first_finding_id IS NOT NULL AND last_finding_id IS NOT NULL
        AND finding_count > 0));

CREATE INDEX alerts_kind_created ON alerts (kind, created_at DESC, id DESC);
-- At most one unresolved alarm per gateway, kind and camera: several hub replicas
-- watching the fleet raise it once (an insert that loses this race does nothing).
CREATE UNIQUE INDEX alerts_fleet_active ON alerts (site, gateway, kind, camera)
    WHERE kind <> 'hotspot' AND status <> 'resolved';

-- The gateway's clock against the hub's, measured on each online status and telemetry
-- message (gateway `ts` minus the hub's receipt), milliseconds, and the measurement
-- before it: a clock is skewed when two agree, so a queue of late messages draining
-- after an outage (each less late than the one before) is not taken for a skew.
ALTER TABLE gateways ADD COLUMN clock_offset_ms bigint;
ALTER TABLE gateways ADD COLUMN clock_offset_prev_ms bigint;
-- When a status last showed the outbox evicting (its counts grew within a session).
ALTER TABLE gateways ADD COLUMN evicted_at timestamptz;
