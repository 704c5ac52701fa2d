-- An alert knows whether its track is a cool exception: a component far colder than
-- its similar sibling (an open phase), graded level 0 with `cool_exception` set. True
-- when any finding of the track is one; alerts stored before this column are filled in
-- from their findings (the findings_track index makes each lookup one index probe).
ALTER TABLE alerts ADD COLUMN cool_exception boolean NOT NULL DEFAULT false;

UPDATE alerts AS a SET cool_exception = true
WHERE EXISTS (
    SELECT 1 FROM findings f
    WHERE f.site = a.site AND f.gateway = a.gateway
      AND f.camera = a.camera AND f.track_id = a.track_id
      AND f.cool_exception
);
