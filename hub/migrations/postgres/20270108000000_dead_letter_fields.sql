-- Dead letters you can filter (issue #21): the rejection class (the reason's text
-- before its first colon: "signature", "schema", …) and the gateway the topic names,
-- kept beside the topic and reason; rows from before are filled the same way.
ALTER TABLE dead_letters ADD COLUMN class TEXT NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN site TEXT;
ALTER TABLE dead_letters ADD COLUMN gateway TEXT;

UPDATE dead_letters SET
    class = CASE WHEN position(':' IN reason) > 0
                 THEN split_part(reason, ':', 1) ELSE reason END,
    site = CASE WHEN topic LIKE 'chitti/v1/%/%/%' THEN split_part(topic, '/', 3) END,
    gateway = CASE WHEN topic LIKE 'chitti/v1/%/%/%' THEN split_part(topic, '/', 4) END;

CREATE INDEX dead_letters_class ON dead_letters (class, id DESC);
CREATE INDEX dead_letters_gateway ON dead_letters (site, gateway, id DESC);
