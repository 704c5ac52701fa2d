-- Asset trends (#21): ΔT as a column (generated from the finding document, so no insert
-- path changes) and an index that answers an asset's history from the index alone.
ALTER TABLE findings ADD COLUMN delta_c double precision
    GENERATED ALWAYS AS ((doc->'severity'->'inputs'->>'delta_c')::double precision) STORED;
CREATE INDEX findings_asset_observed ON findings (site, asset, observed_at)
    INCLUDE (max_c, delta_c, severity_level, source);
