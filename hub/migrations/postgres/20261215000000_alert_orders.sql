-- The orders of the alert list besides newest-created (alerts_created): worst first
-- (then newest) and most recently changed first (hot-first queues). Each index is the
-- list's keyset, ties broken by id, so a page is an index range scan. The text search
-- (`?q=`, a substring match) filters along whichever order is asked for.
CREATE INDEX alerts_worst_level_created ON alerts (worst_level DESC, created_at DESC, id DESC);
CREATE INDEX alerts_updated ON alerts (updated_at DESC, id DESC);
