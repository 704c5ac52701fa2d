-- Asset trends (#21): ΔT as a generated column (virtual: computed from the document on
-- read, stored only in the index) and an index that answers an asset's history alone.
ALTER TABLE findings ADD COLUMN delta_c REAL
    GENERATED ALWAYS AS (json_extract(doc, '$.severity.inputs.delta_c')) VIRTUAL;
CREATE INDEX findings_asset_observed
    ON findings (site, asset, observed_at, max_c, delta_c, severity_level, source);
