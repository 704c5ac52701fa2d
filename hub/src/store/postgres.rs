//! [`PgStore`]: the fleet store, and what only Postgres does: its connection, its
//! migrations, and bulk inserts as one `INSERT … SELECT FROM UNNEST($1::uuid[], …)`:
//! one statement and one array parameter per column whatever the batch size, so
//! Postgres' 65 535-parameter limit never applies, and one round trip per batch. JSON
//! goes over as text and is cast to jsonb.

use super::rows::{AlertDelta, FindingRow};
use super::*;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Row as _;
use std::collections::HashSet;
use std::str::FromStr;

pub(super) static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

const FINDING_INSERT: &str = "INSERT INTO findings (id, site, gateway, camera, asset, preset, \
    captured_at, captured_offset_s, observed_at, received_at, batch_id, source, \
    severity_level, severity_table, cool_exception, component_class, max_c, track_id, \
    track_state, historical, evidence_sha256, doc) \
    SELECT u.id, u.site, u.gateway, u.camera, u.asset, u.preset, u.captured_at, \
    u.captured_offset_s, u.observed_at, u.received_at, u.batch_id, u.source, \
    u.severity_level, u.severity_table, u.cool_exception, u.component_class, u.max_c, \
    u.track_id, u.track_state, u.historical, u.evidence_sha256, u.doc::jsonb \
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
    $7::timestamptz[], $8::int4[], $9::timestamptz[], $10::timestamptz[], $11::uuid[], \
    $12::text[], $13::int2[], $14::text[], $15::bool[], $16::text[], $17::float8[], \
    $18::uuid[], $19::text[], $20::bool[], $21::text[], $22::text[]) \
    AS u(id, site, gateway, camera, asset, preset, captured_at, captured_offset_s, \
    observed_at, received_at, batch_id, source, severity_level, severity_table, \
    cool_exception, component_class, max_c, track_id, track_state, historical, \
    evidence_sha256, doc) \
    ON CONFLICT (id) DO NOTHING RETURNING id";

// SET expressions see the row as it was before the update. GREATEST/LEAST ignore NULLs.
const ALERT_UPSERT: &str = "INSERT INTO alerts AS a (id, site, gateway, camera, track_id, \
    asset, component_class, severity_table, worst_level, worst_max_c, last_level, \
    last_max_c, first_finding_id, first_finding_at, last_finding_id, last_finding_at, \
    finding_count, cleared_at, created_at, updated_at, cool_exception) \
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], \
    $6::text[], $7::text[], $8::text[], $9::int2[], $10::float8[], $11::int2[], \
    $12::float8[], $13::uuid[], $14::timestamptz[], $15::uuid[], $16::timestamptz[], \
    $17::int8[], $18::timestamptz[], $19::timestamptz[], $19::timestamptz[], $20::bool[]) \
    ON CONFLICT (site, gateway, camera, track_id) DO UPDATE SET \
    worst_level = GREATEST(a.worst_level, EXCLUDED.worst_level), \
    worst_max_c = GREATEST(a.worst_max_c, EXCLUDED.worst_max_c), \
    last_level = CASE WHEN EXCLUDED.last_finding_at >= a.last_finding_at \
        THEN EXCLUDED.last_level ELSE a.last_level END, \
    last_max_c = CASE WHEN EXCLUDED.last_finding_at >= a.last_finding_at \
        THEN EXCLUDED.last_max_c ELSE a.last_max_c END, \
    last_finding_id = CASE WHEN EXCLUDED.last_finding_at >= a.last_finding_at \
        THEN EXCLUDED.last_finding_id ELSE a.last_finding_id END, \
    last_finding_at = GREATEST(a.last_finding_at, EXCLUDED.last_finding_at), \
    asset = CASE WHEN EXCLUDED.last_finding_at >= a.last_finding_at \
        THEN COALESCE(EXCLUDED.asset, a.asset) ELSE COALESCE(a.asset, EXCLUDED.asset) END, \
    component_class = CASE WHEN EXCLUDED.last_finding_at >= a.last_finding_at \
        THEN COALESCE(EXCLUDED.component_class, a.component_class) \
        ELSE COALESCE(a.component_class, EXCLUDED.component_class) END, \
    first_finding_id = CASE WHEN EXCLUDED.first_finding_at < a.first_finding_at \
        THEN EXCLUDED.first_finding_id ELSE a.first_finding_id END, \
    first_finding_at = LEAST(a.first_finding_at, EXCLUDED.first_finding_at), \
    finding_count = a.finding_count + EXCLUDED.finding_count, \
    cleared_at = LEAST(a.cleared_at, EXCLUDED.cleared_at), \
    cool_exception = a.cool_exception OR EXCLUDED.cool_exception, \
    updated_at = GREATEST(a.updated_at, EXCLUDED.updated_at) RETURNING id, \
    (status <> 'resolved' AND (notified_level IS NULL OR worst_level > notified_level)) \
    AS unannounced";

/// The Postgres store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to a `postgres://` URL. Connecting is bounded by
    /// [`StoreOptions::acquire_timeout`] (sqlx retries a refused connection until then).
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url).map_err(StoreError::Database)?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The connection pool, for what the trait does not cover (e.g. `COPY`).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Backed for PgStore {
    fn db(&self) -> Db<'_> {
        Db::Postgres(&self.pool)
    }
}

/// Inserts a batch's rows, skipping known ids; returns the ids inserted.
pub(super) async fn insert_finding_rows(
    tx: &mut PgConnection,
    rows: &[FindingRow],
) -> Result<HashSet<Uuid>, StoreError> {
    let text = |f: fn(&FindingRow) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    let maybe = |f: fn(&FindingRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<Uuid> = sqlx::query_scalar(FINDING_INSERT)
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(text(|r| &r.site))
        .bind(text(|r| &r.gateway))
        .bind(text(|r| &r.camera))
        .bind(maybe(|r| r.asset.as_deref()))
        .bind(maybe(|r| r.preset.as_deref()))
        .bind(rows.iter().map(|r| r.captured_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.captured_offset_s).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.observed_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.received_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.batch_id).collect::<Vec<_>>())
        .bind(text(|r| r.source))
        .bind(rows.iter().map(|r| r.severity_level).collect::<Vec<_>>())
        .bind(text(|r| &r.severity_table))
        .bind(rows.iter().map(|r| r.cool_exception).collect::<Vec<_>>())
        .bind(maybe(|r| r.component_class.as_deref()))
        .bind(rows.iter().map(|r| r.max_c).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.track_id).collect::<Vec<_>>())
        .bind(text(|r| r.track_state))
        .bind(rows.iter().map(|r| r.historical).collect::<Vec<_>>())
        .bind(maybe(|r| r.evidence_sha256.as_deref()))
        .bind(text(|r| &r.doc))
        .fetch_all(&mut *tx)
        .await?;
    Ok(ids.into_iter().collect())
}

/// Merges the deltas into their alerts; returns the ids of the alerts touched.
pub(super) async fn merge_alerts(
    tx: &mut PgConnection,
    deltas: &[AlertDelta],
) -> Result<Vec<(Uuid, bool)>, StoreError> {
    if deltas.is_empty() {
        return Ok(Vec::new());
    }
    let col = |f: fn(&AlertDelta) -> &str| deltas.iter().map(f).collect::<Vec<_>>();
    let rows = sqlx::query(ALERT_UPSERT)
        .bind(deltas.iter().map(|d| d.new_id).collect::<Vec<_>>())
        .bind(col(|d| &d.site))
        .bind(col(|d| &d.gateway))
        .bind(col(|d| &d.camera))
        .bind(deltas.iter().map(|d| d.track_id).collect::<Vec<_>>())
        .bind(
            deltas
                .iter()
                .map(|d| d.asset.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            deltas
                .iter()
                .map(|d| d.component_class.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(col(|d| &d.severity_table))
        .bind(deltas.iter().map(|d| d.worst_level).collect::<Vec<_>>())
        .bind(deltas.iter().map(|d| d.worst_max_c).collect::<Vec<_>>())
        .bind(deltas.iter().map(|d| d.last_level).collect::<Vec<_>>())
        .bind(deltas.iter().map(|d| d.last_max_c).collect::<Vec<_>>())
        .bind(
            deltas
                .iter()
                .map(|d| d.first_finding_id)
                .collect::<Vec<_>>(),
        )
        .bind(
            deltas
                .iter()
                .map(|d| d.first_finding_at)
                .collect::<Vec<_>>(),
        )
        .bind(deltas.iter().map(|d| d.last_finding_id).collect::<Vec<_>>())
        .bind(deltas.iter().map(|d| d.last_finding_at).collect::<Vec<_>>())
        .bind(deltas.iter().map(|d| d.finding_count).collect::<Vec<_>>())
        .bind(deltas.iter().map(|d| d.cleared_at).collect::<Vec<_>>())
        .bind(deltas.iter().map(|d| d.received_at).collect::<Vec<_>>())
        .bind(deltas.iter().map(|d| d.cool_exception).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<Uuid, _>(0)?, r.try_get::<bool, _>(1)?)))
        .collect()
}
