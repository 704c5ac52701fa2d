//! [`SqliteStore`]: the embedded default, one file in WAL mode, and what only SQLite
//! does: its connection options, its migrations, and bulk inserts as chunked
//! `INSERT … VALUES` (SQLite binds at most 32 766 parameters per statement).
//!
//! Timestamps are integer microseconds (see the migration and `sql`).

use super::rows::{AlertDelta, FindingRow, FINDING_COLUMNS};
use super::*;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

pub(super) static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite allows 32 766 bound parameters per statement (the default of the bundled
/// libsqlite3 3.46 since 3.32); 1 000 rows × 22 columns stays well under it, and under
/// the 1 MB statement-length limit.
const FINDING_ROWS_PER_STATEMENT: usize = 1000;
const ALERT_ROWS_PER_STATEMENT: usize = 1000;
const _: () = assert!(FINDING_ROWS_PER_STATEMENT * FINDING_COLUMNS < 32_766);

const FINDING_INSERT: &str = "INSERT INTO findings (id, site, gateway, camera, asset, preset, \
    captured_at, captured_offset_s, observed_at, received_at, batch_id, source, \
    severity_level, severity_table, cool_exception, component_class, max_c, track_id, \
    track_state, historical, evidence_sha256, delta_c, doc) ";

const ALERT_INSERT: &str = "INSERT INTO alerts (id, site, gateway, camera, track_id, asset, \
    component_class, severity_table, worst_level, worst_max_c, last_level, last_max_c, \
    first_finding_id, first_finding_at, last_finding_id, last_finding_at, finding_count, \
    cleared_at, created_at, updated_at, cool_exception) ";

// Column references in DO UPDATE SET see the row as it was before the update, so the
// order of the assignments does not matter. SQLite's two-argument min()/max() return
// NULL when either is NULL, hence the coalesce() around nullable ones.
const ALERT_MERGE: &str = " ON CONFLICT (site, gateway, camera, track_id) DO UPDATE SET \
    worst_level = max(alerts.worst_level, excluded.worst_level), \
    worst_max_c = max(alerts.worst_max_c, excluded.worst_max_c), \
    last_level = CASE WHEN excluded.last_finding_at >= alerts.last_finding_at \
        THEN excluded.last_level ELSE alerts.last_level END, \
    last_max_c = CASE WHEN excluded.last_finding_at >= alerts.last_finding_at \
        THEN excluded.last_max_c ELSE alerts.last_max_c END, \
    last_finding_id = CASE WHEN excluded.last_finding_at >= alerts.last_finding_at \
        THEN excluded.last_finding_id ELSE alerts.last_finding_id END, \
    last_finding_at = max(alerts.last_finding_at, excluded.last_finding_at), \
    asset = CASE WHEN excluded.last_finding_at >= alerts.last_finding_at \
        THEN coalesce(excluded.asset, alerts.asset) ELSE coalesce(alerts.asset, excluded.asset) END, \
    component_class = CASE WHEN excluded.last_finding_at >= alerts.last_finding_at \
        THEN coalesce(excluded.component_class, alerts.component_class) \
        ELSE coalesce(alerts.component_class, excluded.component_class) END, \
    first_finding_id = CASE WHEN excluded.first_finding_at < alerts.first_finding_at \
        THEN excluded.first_finding_id ELSE alerts.first_finding_id END, \
    first_finding_at = min(alerts.first_finding_at, excluded.first_finding_at), \
    finding_count = alerts.finding_count + excluded.finding_count, \
    cleared_at = coalesce(min(alerts.cleared_at, excluded.cleared_at), alerts.cleared_at, excluded.cleared_at), \
    cool_exception = alerts.cool_exception OR excluded.cool_exception, \
    updated_at = max(alerts.updated_at, excluded.updated_at) RETURNING id, \
    (status <> 'resolved' AND (notified_level IS NULL OR worst_level > notified_level)) \
    AS unannounced";

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating with `mode=rwc`) the database a `sqlite:` URL names, e.g.
    /// `sqlite://hub.db?mode=rwc` or `sqlite:data/hub.db`.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url).map_err(StoreError::Database)?;
        Self::connect_with(connect, options).await
    }

    /// Opens the database file at `path`, creating it when missing.
    pub async fn open(path: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::connect_with(connect, options).await
    }

    /// Opens the database file at `path` for reading only, as an immutable file (no
    /// locks, no journal, nothing written): for a backup's copy, which must not change
    /// by being read.
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .immutable(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect)
            .await?;
        Ok(Self { pool })
    }

    async fn connect_with(
        connect: SqliteConnectOptions,
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        let connect = connect
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: in WAL mode a commit fsyncs the log, so an acknowledged finding
            // survives a power cut (NORMAL could lose the last commits).
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(options.sqlite_busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self { pool })
    }

    /// The connection pool, for what the trait does not cover.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Backed for SqliteStore {
    fn db(&self) -> Db<'_> {
        Db::Sqlite(&self.pool)
    }
}

/// Inserts a batch's rows, skipping known ids; returns the ids inserted.
pub(super) async fn insert_finding_rows(
    tx: &mut SqliteConnection,
    rows: &[FindingRow],
) -> Result<HashSet<Uuid>, StoreError> {
    let mut inserted = HashSet::with_capacity(rows.len());
    for chunk in rows.chunks(FINDING_ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new(FINDING_INSERT);
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(&r.site)
                .push_bind(&r.gateway)
                .push_bind(&r.camera)
                .push_bind(&r.asset)
                .push_bind(&r.preset)
                .push_bind(micros(r.captured_at))
                .push_bind(r.captured_offset_s)
                .push_bind(micros(r.observed_at))
                .push_bind(micros(r.received_at))
                .push_bind(r.batch_id)
                .push_bind(r.source)
                .push_bind(r.severity_level)
                .push_bind(&r.severity_table)
                .push_bind(r.cool_exception)
                .push_bind(&r.component_class)
                .push_bind(r.max_c)
                .push_bind(r.track_id)
                .push_bind(r.track_state)
                .push_bind(r.historical)
                .push_bind(&r.evidence_sha256)
                .push_bind(r.delta_c)
                .push_bind(&r.doc);
        });
        qb.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
        let ids: Vec<Uuid> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
        inserted.extend(ids);
    }
    Ok(inserted)
}

/// Merges the deltas into their alerts; returns the ids of the alerts touched.
pub(super) async fn merge_alerts(
    tx: &mut SqliteConnection,
    deltas: &[AlertDelta],
) -> Result<Vec<(Uuid, bool)>, StoreError> {
    let mut touched = Vec::with_capacity(deltas.len());
    for chunk in deltas.chunks(ALERT_ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Sqlite>::new(ALERT_INSERT);
        qb.push_values(chunk, |mut b, d| {
            b.push_bind(d.new_id)
                .push_bind(&d.site)
                .push_bind(&d.gateway)
                .push_bind(&d.camera)
                .push_bind(d.track_id)
                .push_bind(&d.asset)
                .push_bind(&d.component_class)
                .push_bind(&d.severity_table)
                .push_bind(d.worst_level)
                .push_bind(d.worst_max_c)
                .push_bind(d.last_level)
                .push_bind(d.last_max_c)
                .push_bind(d.first_finding_id)
                .push_bind(micros(d.first_finding_at))
                .push_bind(d.last_finding_id)
                .push_bind(micros(d.last_finding_at))
                .push_bind(d.finding_count)
                .push_bind(d.cleared_at.map(micros))
                .push_bind(micros(d.received_at))
                .push_bind(micros(d.received_at))
                .push_bind(d.cool_exception);
        });
        qb.push(ALERT_MERGE);
        let rows: Vec<(Uuid, bool)> = qb.build_query_as().fetch_all(&mut *tx).await?;
        touched.extend(rows);
    }
    Ok(touched)
}
