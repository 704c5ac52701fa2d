//! Asset trends: an asset's findings over time in buckets (max °C, max ΔT, worst level,
//! inspections), answered from the `findings_asset_observed` index.

use super::sql::{Row, Sql};
use super::*;

/// Trends per asset.
pub trait TrendStore: Backed {
    /// The findings of `assets` of `site` observed in `since..until`, in buckets of
    /// `bucket` (at least a second), ordered by asset and time. Empty buckets are not
    /// returned.
    fn asset_trend(
        &self,
        site: &str,
        assets: &[String],
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        bucket: chrono::Duration,
    ) -> impl Future<Output = Result<Vec<TrendPoint>, StoreError>> + Send {
        async move {
            if assets.is_empty() {
                return Ok(Vec::new());
            }
            let seconds = bucket.num_seconds().max(1);
            let bucket_expr = match self.db().backend() {
                Backend::Sqlite => format!("(observed_at / {0}) * {0}", seconds * 1_000_000),
                Backend::Postgres => format!(
                    "to_timestamp(floor(extract(epoch FROM observed_at) / {seconds}) * {seconds})"
                ),
            };
            let mut sql = Sql::new(format!(
                "SELECT asset, {bucket_expr} AS bucket_start, count(*) AS n, max(max_c) AS max_c, \
                 max(delta_c) AS max_delta_c, max(severity_level) AS worst, \
                 sum(CASE WHEN source = 'upload' THEN 1 ELSE 0 END) AS uploads \
                 FROM findings WHERE site = "
            ));
            sql.push_bind(site.to_string()).push(" AND asset IN (");
            for (i, a) in assets.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push_bind(a.clone());
            }
            sql.push(") AND observed_at >= ")
                .push_bind(since)
                .push(" AND observed_at < ")
                .push_bind(until)
                .push(" GROUP BY asset, bucket_start ORDER BY asset, bucket_start");
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(trend_point)
                .collect()
        }
    }

    /// The severity table of an asset's newest finding (its chart's bands).
    fn asset_severity_table(
        &self,
        site: &str,
        asset: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT severity_table FROM findings WHERE site = $1 AND asset = $2 \
                 ORDER BY observed_at DESC LIMIT 1",
            )
            .bind(site)
            .bind(asset);
            self.db()
                .fetch_optional(sql)
                .await?
                .map(|r| r.get("severity_table"))
                .transpose()
        }
    }
}

impl<T: Backed> TrendStore for T {}

fn trend_point(row: &Row) -> Result<TrendPoint, StoreError> {
    let worst: i16 = row.get("worst")?;
    Ok(TrendPoint {
        asset: row.get("asset")?,
        bucket_start: row.time("bucket_start")?,
        findings: row.count("n")?,
        max_c: row.get("max_c")?,
        max_delta_c: row.get("max_delta_c")?,
        worst_level: u8::try_from(worst)
            .map_err(|_| StoreError::corrupt("severity level", worst))?,
        uploads: row.count("uploads")?,
    })
}
