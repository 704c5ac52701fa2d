-- Fleet alarm kinds grow with the product (issue #19 adds `config_failed`): the set is
-- `AlertKind` in the hub's code, which refuses an unknown name when it reads one; the
-- database keeps only the shape of a kind, so a new kind needs no table rebuild.
ALTER TABLE alerts
    DROP CONSTRAINT alerts_kind_check,
    ADD CONSTRAINT alerts_kind_check CHECK (kind ~ '^[a-z_]{1,64}$');
