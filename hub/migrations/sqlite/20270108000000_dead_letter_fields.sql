-- Dead letters you can filter (issue #21): the rejection class (the reason's text
-- before its first colon: "signature", "schema", …) and the gateway the topic names,
-- kept beside the topic and reason; rows from before are filled the same way.
ALTER TABLE dead_letters ADD COLUMN class TEXT NOT NULL DEFAULT '';
ALTER TABLE dead_letters ADD COLUMN site TEXT;
ALTER TABLE dead_letters ADD COLUMN gateway TEXT;

-- After `chitti/v1/` (10 characters): `{site}/{gateway}/{kind}`.
UPDATE dead_letters SET
    class = CASE WHEN instr(reason, ':') > 0
                 THEN substr(reason, 1, instr(reason, ':') - 1) ELSE reason END,
    site = CASE WHEN topic LIKE 'chitti/v1/%/%/%'
                THEN substr(substr(topic, 11), 1, instr(substr(topic, 11), '/') - 1) END,
    gateway = CASE WHEN topic LIKE 'chitti/v1/%/%/%'
                   THEN substr(
                       substr(substr(topic, 11), instr(substr(topic, 11), '/') + 1),
                       1,
                       instr(substr(substr(topic, 11), instr(substr(topic, 11), '/') + 1), '/') - 1)
              END;

CREATE INDEX dead_letters_class ON dead_letters (class, id DESC);
CREATE INDEX dead_letters_gateway ON dead_letters (site, gateway, id DESC);
