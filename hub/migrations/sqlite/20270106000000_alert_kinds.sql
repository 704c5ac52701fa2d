-- Fleet alarm kinds grow with the product (issue #19 adds `config_failed`): the set is
-- `AlertKind` in the hub's code, which refuses an unknown name when it reads one; the
-- database keeps only the shape of a kind, so a new kind needs no table rebuild again.
-- SQLite cannot alter a CHECK, so the table is rebuilt once more, exactly as in
-- 20270103000000_fleet_alarms.sql (foreign keys deferred, rows through a temporary
-- table so the trails' references are adopted back), with every column kept.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE alerts_new (
    id                BLOB PRIMARY KEY,
    site              TEXT NOT NULL,
    gateway           TEXT NOT NULL,
    camera            TEXT NOT NULL,           -- '' for an alarm about the whole gateway
    track_id          BLOB NOT NULL,
    asset             TEXT,
    component_class   TEXT,
    severity_table    TEXT,
    status            TEXT NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'acknowledged', 'resolved')),
    worst_level       INTEGER NOT NULL,
    worst_max_c       REAL,
    last_level        INTEGER NOT NULL,
    last_max_c        REAL,
    first_finding_id  BLOB,
    first_finding_at  INTEGER NOT NULL,
    last_finding_id   BLOB,
    last_finding_at   INTEGER NOT NULL,
    finding_count     INTEGER NOT NULL CHECK (finding_count >= 0),
    cleared_at        INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    status_changed_at INTEGER,
    cool_exception    INTEGER NOT NULL DEFAULT 0 CHECK (cool_exception IN (0, 1)),
    notified_level    INTEGER,
    kind              TEXT NOT NULL DEFAULT 'hotspot'
                      CHECK (length(kind) BETWEEN 1 AND 64 AND kind NOT GLOB '*[^a-z_]*'),
    detail            TEXT,
    UNIQUE (site, gateway, camera, track_id),
    CHECK (kind <> 'hotspot' OR (severity_table IS NOT NULL AND worst_max_c IS NOT NULL
           AND last_max_c IS NOT NULL AND first_finding_id IS NOT NULL
           AND last_finding_id IS NOT NULL AND finding_count > 0))
) STRICT;

-- The rows wait in a temporary table while the old table is dropped: dropping it
-- orphans the trails (deferred: counted, not refused) and inserting each row into the
-- new `alerts` adopts them back, so the count is zero again at commit.
CREATE TEMP TABLE alerts_moving AS SELECT * FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_new RENAME TO alerts;

INSERT INTO alerts (id, site, gateway, camera, track_id, asset, component_class,
    severity_table, status, worst_level, worst_max_c, last_level, last_max_c,
    first_finding_id, first_finding_at, last_finding_id, last_finding_at, finding_count,
    cleared_at, created_at, updated_at, status_changed_at, cool_exception, notified_level,
    kind, detail)
SELECT id, site, gateway, camera, track_id, asset, component_class,
    severity_table, status, worst_level, worst_max_c, last_level, last_max_c,
    first_finding_id, first_finding_at, last_finding_id, last_finding_at, finding_count,
    cleared_at, created_at, updated_at, status_changed_at, cool_exception, notified_level,
    kind, detail
FROM alerts_moving;
DROP TABLE alerts_moving;

CREATE INDEX alerts_created ON alerts (created_at DESC, id DESC);
CREATE INDEX alerts_site_created ON alerts (site, created_at DESC, id DESC);
CREATE INDEX alerts_status_created ON alerts (status, created_at DESC, id DESC);
CREATE INDEX alerts_worst_level_created ON alerts (worst_level DESC, created_at DESC, id DESC);
CREATE INDEX alerts_updated ON alerts (updated_at DESC, id DESC);
CREATE INDEX alerts_kind_created ON alerts (kind, created_at DESC, id DESC);
-- At most one unresolved alarm per gateway, kind and camera: several hub replicas
-- watching the fleet raise it once (an insert that loses this race does nothing).
CREATE UNIQUE INDEX alerts_fleet_active ON alerts (site, gateway, kind, camera)
    WHERE kind <> 'hotspot' AND status <> 'resolved';
