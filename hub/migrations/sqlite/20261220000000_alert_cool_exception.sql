-- An alert knows whether its track is a cool exception: a component far colder than
-- its similar sibling (an open phase), graded level 0 with `cool_exception` set. True
-- when any finding of the track is one; alerts stored before this column are filled in
-- from their findings (the findings_track index makes each lookup one index probe).
ALTER TABLE alerts ADD COLUMN cool_exception INTEGER NOT NULL DEFAULT 0
    CHECK (cool_exception IN (0, 1));

UPDATE alerts SET cool_exception = 1
WHERE EXISTS (
    SELECT 1 FROM findings f
    WHERE f.site = alerts.site AND f.gateway = alerts.gateway
      AND f.camera = alerts.camera AND f.track_id = alerts.track_id
      AND f.cool_exception = 1
);
