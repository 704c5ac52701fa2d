-- The audit log becomes a hash chain (#21): every row carries its place in the chain
-- (`seq`, contiguous from 1), the previous row's hash and its own. The personal fields
-- (actor, target, from_address) enter the chain only through salted digests, so that a
-- departed user can be pseudonymised (value replaced, salt dropped) without breaking it.
-- Rows written before this migration are chained by the hub right after it (in Rust:
-- SQL has no SHA-256 on SQLite). See ARCHITECTURE.md "The audit chain".
ALTER TABLE audit_log ADD COLUMN seq bigint;
ALTER TABLE audit_log ADD COLUMN prev_hash text;
ALTER TABLE audit_log ADD COLUMN hash text;
ALTER TABLE audit_log ADD COLUMN actor_salt text;
ALTER TABLE audit_log ADD COLUMN actor_digest text;
ALTER TABLE audit_log ADD COLUMN target_salt text;
ALTER TABLE audit_log ADD COLUMN target_digest text;
ALTER TABLE audit_log ADD COLUMN address_salt text;
ALTER TABLE audit_log ADD COLUMN address_digest text;

CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq);
-- The filters of the audit page (newest first within each).
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_target ON audit_log (target, seq);

-- The chain's head: the newest row's seq and hash. Appending locks this one row (the
-- chain-head lock), so appends are serialised across hub replicas; `audit verify`
-- compares it with the newest row, which detects deleting rows at the end.
CREATE TABLE audit_chain_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO audit_chain_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
