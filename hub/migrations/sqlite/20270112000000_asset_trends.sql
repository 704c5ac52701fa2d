-- Asset trends (#21): ΔT as a column (written by ingest; old rows filled from their
-- document here) and an index that answers an asset's history from the index alone.
-- (A virtual generated column would not do: SQLite reads the row to compute it, so the
-- index would not cover the query.)
ALTER TABLE findings ADD COLUMN delta_c REAL;
UPDATE findings SET delta_c = json_extract(doc, '$.severity.inputs.delta_c');
CREATE INDEX findings_asset_observed
    ON findings (site, asset, observed_at, max_c, delta_c, severity_level, source);
