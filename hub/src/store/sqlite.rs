//! [`SqliteStore`]: the embedded default, one file in WAL mode.
//!
//! Timestamps are integer microseconds (see the migration). Writes begin with
//! `BEGIN IMMEDIATE`, so a writer takes the file lock up front and waits for it under
//! the busy timeout, instead of failing with `SQLITE_BUSY` when a read transaction
//! later needs to write.

use super::cursor::{Cursor, Listing};
use super::rows::{
    from_micros, AlertDelta, PreparedBatch, API_TOKEN_COLUMNS, ASSET_COLUMNS, FINDING_COLUMNS,
    SESSION_COLUMNS, SITE_COLUMNS, STRUCTURE_COLUMNS, USER_COLUMNS,
};
use super::*;
use chitti_common::finding::{Finding, ModelIdentity};
use chitti_common::protocol::{validate_id, CameraStatus};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite allows 32 766 bound parameters per statement (the default of the bundled
/// libsqlite3 3.46 since 3.32); 1 000 rows × 22 columns stays well under it, and under
/// the 1 MB statement-length limit.
const FINDING_ROWS_PER_STATEMENT: usize = 1000;
const ALERT_ROWS_PER_STATEMENT: usize = 1000;
const _: () = assert!(FINDING_ROWS_PER_STATEMENT * FINDING_COLUMNS < 32_766);

const WRITE: &str = "BEGIN IMMEDIATE";

const FINDING_INSERT: &str = "INSERT INTO findings (id, site, gateway, camera, asset, preset, \
    captured_at, captured_offset_s, observed_at, received_at, batch_id, source, \
    severity_level, severity_table, cool_exception, component_class, max_c, track_id, \
    track_state, historical, evidence_sha256, doc) ";

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
    updated_at = max(alerts.updated_at, excluded.updated_at) RETURNING id";

const ALERT_COLUMNS: &str = "id, site, gateway, camera, track_id, asset, component_class, \
    severity_table, status, worst_level, worst_max_c, last_level, last_max_c, \
    first_finding_id, first_finding_at, last_finding_id, last_finding_at, finding_count, \
    cleared_at, created_at, updated_at, status_changed_at, cool_exception";

const GATEWAY_COLUMNS: &str = "site, gateway, password_hash, public_key, created_at, \
    revoked_at, online, last_seen_at, status_at, agent_version, config_version, model, \
    buffer_depth, buffer_bytes, buffer_oldest_at, evicted_evidence, evicted_findings, \
    cameras, last_status";

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn ts(v: i64) -> Result<DateTime<Utc>, StoreError> {
    from_micros(v).ok_or_else(|| StoreError::corrupt("timestamp", v))
}

fn ts_opt(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(ts).transpose()
}

fn json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e))
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

    /// Merges the deltas into their alerts; returns the ids of the alerts touched.
    async fn insert_alerts(
        tx: &mut sqlx::SqliteConnection,
        deltas: &[AlertDelta],
    ) -> Result<Vec<Uuid>, StoreError> {
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
                    .push_bind(us(d.first_finding_at))
                    .push_bind(d.last_finding_id)
                    .push_bind(us(d.last_finding_at))
                    .push_bind(d.finding_count)
                    .push_bind(d.cleared_at.map(us))
                    .push_bind(us(d.received_at))
                    .push_bind(us(d.received_at))
                    .push_bind(d.cool_exception);
            });
            qb.push(ALERT_MERGE);
            let ids: Vec<Uuid> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            touched.extend(ids);
        }
        Ok(touched)
    }

    async fn alert_in(
        conn: &mut sqlx::SqliteConnection,
        id: Uuid,
    ) -> Result<Option<AlertRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(alert_from_row).transpose()
    }
}

impl SqliteStore {
    /// Why an asset's foreign key failed: its site, or else its structure, is missing.
    async fn missing_parent(&self, asset: &NewAsset) -> StoreError {
        let site: Result<bool, _> =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sites WHERE id = ?)")
                .bind(&asset.site)
                .fetch_one(&self.pool)
                .await;
        match site {
            Ok(false) => StoreError::NotFound {
                what: "site",
                id: asset.site.clone(),
            },
            Ok(true) => StoreError::NotFound {
                what: "structure",
                id: format!(
                    "{}/{}",
                    asset.site,
                    asset.structure.as_deref().unwrap_or_default()
                ),
            },
            Err(e) => e.into(),
        }
    }
}

fn user_from_row(row: &SqliteRow) -> Result<UserRecord, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::parse_stored(&role)?,
        created_at: ts(row.try_get("created_at")?)?,
        disabled_at: ts_opt(row.try_get("disabled_at")?)?,
    })
}

fn session_from_row(row: &SqliteRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        csrf_token: row.try_get("csrf_token")?,
        created_at: ts(row.try_get("created_at")?)?,
        expires_at: ts(row.try_get("expires_at")?)?,
        last_seen_at: ts(row.try_get("last_seen_at")?)?,
        from_address: row.try_get("from_address")?,
    })
}

fn api_token_from_row(row: &SqliteRow) -> Result<ApiTokenRecord, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(ApiTokenRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        scopes: split_scopes(&scopes),
        created_at: ts(row.try_get("created_at")?)?,
        revoked_at: ts_opt(row.try_get("revoked_at")?)?,
        last_used_at: ts_opt(row.try_get("last_used_at")?)?,
        expires_at: ts_opt(row.try_get("expires_at")?)?,
    })
}

fn site_from_row(row: &SqliteRow) -> Result<SiteRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(SiteRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: SiteKind::parse_stored(&kind)?,
        created_at: ts(row.try_get("created_at")?)?,
    })
}

fn structure_from_row(row: &SqliteRow) -> Result<StructureRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(StructureRecord {
        site: row.try_get("site")?,
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: StructureKind::parse_stored(&kind)?,
        created_at: ts(row.try_get("created_at")?)?,
    })
}

fn asset_from_row(row: &SqliteRow) -> Result<AssetRecord, StoreError> {
    let phase: Option<String> = row.try_get("phase")?;
    Ok(AssetRecord {
        site: row.try_get("site")?,
        structure: row.try_get("structure")?,
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        phase: phase.as_deref().map(Phase::parse_stored).transpose()?,
        component_class: row.try_get("component_class")?,
        created_at: ts(row.try_get("created_at")?)?,
    })
}

fn stored_finding(row: &SqliteRow) -> Result<StoredFinding, StoreError> {
    let doc: String = row.try_get("doc")?;
    Ok(StoredFinding {
        finding: json::<Finding>("finding", &doc)?,
        received_at: ts(row.try_get("received_at")?)?,
        batch_id: row.try_get("batch_id")?,
    })
}

fn level(v: i64) -> Result<u8, StoreError> {
    u8::try_from(v).map_err(|_| StoreError::corrupt("severity level", v))
}

fn alert_from_row(row: &SqliteRow) -> Result<AlertRecord, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(AlertRecord {
        id: row.try_get("id")?,
        site: row.try_get("site")?,
        gateway: row.try_get("gateway")?,
        camera: row.try_get("camera")?,
        track_id: row.try_get("track_id")?,
        asset: row.try_get("asset")?,
        component_class: row.try_get("component_class")?,
        severity_table: row.try_get("severity_table")?,
        status: AlertStatus::parse(&status)?,
        worst_level: level(row.try_get("worst_level")?)?,
        worst_max_c: row.try_get("worst_max_c")?,
        last_level: level(row.try_get("last_level")?)?,
        last_max_c: row.try_get("last_max_c")?,
        first_finding_id: row.try_get("first_finding_id")?,
        first_finding_at: ts(row.try_get("first_finding_at")?)?,
        last_finding_id: row.try_get("last_finding_id")?,
        last_finding_at: ts(row.try_get("last_finding_at")?)?,
        finding_count: to_u64(row.try_get("finding_count")?),
        cleared_at: ts_opt(row.try_get("cleared_at")?)?,
        cool_exception: row.try_get("cool_exception")?,
        created_at: ts(row.try_get("created_at")?)?,
        updated_at: ts(row.try_get("updated_at")?)?,
        status_changed_at: ts_opt(row.try_get("status_changed_at")?)?,
    })
}

fn gateway_from_row(row: &SqliteRow) -> Result<GatewayRecord, StoreError> {
    let key: Vec<u8> = row.try_get("public_key")?;
    let public_key: [u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::corrupt("public key", format!("{} bytes", key.len())))?;
    let model: Option<String> = row.try_get("model")?;
    let cameras: Option<String> = row.try_get("cameras")?;
    let last_status: Option<String> = row.try_get("last_status")?;
    let depth: Option<i64> = row.try_get("buffer_depth")?;
    let buffer = match depth {
        Some(depth) => Some(BufferStats {
            depth: to_u64(depth),
            bytes: to_u64(row.try_get::<Option<i64>, _>("buffer_bytes")?.unwrap_or(0)),
            oldest_at: ts_opt(row.try_get("buffer_oldest_at")?)?,
            evicted_evidence: to_u64(
                row.try_get::<Option<i64>, _>("evicted_evidence")?
                    .unwrap_or(0),
            ),
            evicted_findings: to_u64(
                row.try_get::<Option<i64>, _>("evicted_findings")?
                    .unwrap_or(0),
            ),
        }),
        None => None,
    };
    let config_version: Option<i64> = row.try_get("config_version")?;
    Ok(GatewayRecord {
        site: row.try_get("site")?,
        gateway: row.try_get("gateway")?,
        password_hash: row.try_get("password_hash")?,
        public_key,
        created_at: ts(row.try_get("created_at")?)?,
        revoked_at: ts_opt(row.try_get("revoked_at")?)?,
        online: row.try_get("online")?,
        last_seen_at: ts_opt(row.try_get("last_seen_at")?)?,
        status_at: ts_opt(row.try_get("status_at")?)?,
        agent_version: row.try_get("agent_version")?,
        config_version: config_version.and_then(|v| u32::try_from(v).ok()),
        model: model
            .map(|m| json::<ModelIdentity>("gateway model", &m))
            .transpose()?,
        buffer,
        cameras: match cameras {
            Some(c) => json::<Vec<CameraStatus>>("gateway cameras", &c)?,
            None => Vec::new(),
        },
        last_status: last_status
            .map(|s| json::<AgentStatus>("gateway status", &s))
            .transpose()?,
    })
}

fn telemetry_from_row(row: &SqliteRow) -> Result<TelemetryMinute, StoreError> {
    let avg = |sum: &str, n: &str| -> Result<Option<f64>, StoreError> {
        let n: i64 = row.try_get(n)?;
        let sum: f64 = row.try_get(sum)?;
        Ok((n > 0).then(|| sum / n as f64))
    };
    Ok(TelemetryMinute {
        bucket_start: ts(row.try_get("bucket_start")?)?,
        samples: to_u64(row.try_get("samples")?),
        cpu_temp_avg_c: avg("cpu_temp_sum", "cpu_temp_n")?,
        cpu_temp_max_c: row.try_get("cpu_temp_max")?,
        gpu_temp_avg_c: avg("gpu_temp_sum", "gpu_temp_n")?,
        gpu_temp_max_c: row.try_get("gpu_temp_max")?,
        disk_free_min_bytes: row.try_get::<Option<i64>, _>("disk_free_min")?.map(to_u64),
        analysis_latency_avg_ms: avg("latency_sum", "latency_n")?,
        analysis_latency_max_ms: row.try_get("latency_max")?,
        frame_drops: to_u64(row.try_get("frame_drops")?),
        first_ts: ts(row.try_get("first_ts")?)?,
        last_ts: ts(row.try_get("last_ts")?)?,
    })
}

impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn migration_status(&self) -> Result<Vec<MigrationInfo>, StoreError> {
        let has_table: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&self.pool)
        .await?;
        let applied: HashSet<i64> = if has_table {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect()
        } else {
            HashSet::new()
        };
        Ok(MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| MigrationInfo {
                version: m.version,
                description: m.description.to_string(),
                applied: applied.contains(&m.version),
            })
            .collect())
    }

    async fn insert_findings(
        &self,
        findings: &[IngestedFinding],
    ) -> Result<InsertReport, StoreError> {
        self.insert_findings_with(findings, None).await
    }

    async fn insert_findings_audited(
        &self,
        findings: &[IngestedFinding],
        audit: &AuditEvent,
    ) -> Result<InsertReport, StoreError> {
        self.insert_findings_with(findings, Some(audit)).await
    }

    async fn finding(&self, id: Uuid) -> Result<Option<StoredFinding>, StoreError> {
        let row = sqlx::query("SELECT doc, received_at, batch_id FROM findings WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_finding).transpose()
    }

    async fn count_findings(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM findings")
            .fetch_one(&self.pool)
            .await?;
        Ok(to_u64(n))
    }

    async fn list_findings(&self, q: &FindingQuery) -> Result<Page<StoredFinding>, StoreError> {
        let limit = page_limit(q.limit);
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT id, doc, received_at, batch_id FROM findings WHERE 1 = 1",
        );
        if let Some(site) = &q.site {
            qb.push(" AND site = ").push_bind(site);
        }
        if let Some(gateway) = &q.gateway {
            qb.push(" AND gateway = ").push_bind(gateway);
        }
        if let Some(camera) = &q.camera {
            qb.push(" AND camera = ").push_bind(camera);
        }
        if let Some(asset) = &q.asset {
            qb.push(" AND asset = ").push_bind(asset);
        }
        if let Some(min) = q.min_level {
            qb.push(" AND severity_level >= ").push_bind(i64::from(min));
        }
        if let Some(since) = q.since {
            qb.push(" AND received_at >= ").push_bind(us(since));
        }
        if let Some(until) = q.until {
            qb.push(" AND received_at < ").push_bind(us(until));
        }
        if let Some(class) = &q.component_class {
            qb.push(" AND component_class = ").push_bind(class);
        }
        if let Some(track) = q.track {
            qb.push(" AND track_id = ").push_bind(track);
        }
        if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
            push_contains(
                &mut qb,
                &["site", "gateway", "camera", "asset", "component_class"],
                text,
            );
        }
        if let Some(after) = &q.after {
            let (at, id) = after.key(Listing::Findings)?;
            qb.push(" AND (received_at, id) < (")
                .push_bind(at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        qb.push(" ORDER BY received_at DESC, id DESC LIMIT ")
            .push_bind(limit as i64 + 1);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(stored_finding)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(into_page(items, limit, |f| {
            Cursor::new(Listing::Findings, f.received_at, f.finding.id)
        }))
    }

    async fn alert(&self, id: Uuid) -> Result<Option<AlertRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        Self::alert_in(&mut conn, id).await
    }

    async fn list_alerts(&self, q: &AlertQuery) -> Result<Page<AlertRecord>, StoreError> {
        let limit = page_limit(q.limit);
        let mut qb =
            QueryBuilder::<Sqlite>::new(format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE 1 = 1"));
        if let Some(site) = &q.site {
            qb.push(" AND site = ").push_bind(site);
        }
        if let Some(gateway) = &q.gateway {
            qb.push(" AND gateway = ").push_bind(gateway);
        }
        if let Some(asset) = &q.asset {
            qb.push(" AND asset = ").push_bind(asset);
        }
        if let Some(status) = q.status {
            qb.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(min) = q.min_level {
            qb.push(" AND worst_level >= ").push_bind(i64::from(min));
        }
        if let Some(class) = &q.component_class {
            qb.push(" AND component_class = ").push_bind(class);
        }
        if let Some(since) = q.since {
            qb.push(" AND created_at >= ").push_bind(us(since));
        }
        if let Some(until) = q.until {
            qb.push(" AND created_at < ").push_bind(us(until));
        }
        if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
            push_contains(
                &mut qb,
                &["site", "gateway", "camera", "asset", "component_class"],
                text,
            );
        }
        let listing = alert_listing(q.sort);
        if let Some(after) = &q.after {
            let (rank, at, id) = after.ranked_key(listing)?;
            match q.sort {
                AlertSort::CreatedDesc => qb.push(" AND (created_at, id) < ("),
                AlertSort::UpdatedDesc => qb.push(" AND (updated_at, id) < ("),
                AlertSort::WorstLevelDesc => qb
                    .push(" AND (worst_level, created_at, id) < (")
                    .push_bind(rank)
                    .push(", "),
            };
            qb.push_bind(at).push(", ").push_bind(id).push(")");
        }
        qb.push(match q.sort {
            AlertSort::CreatedDesc => " ORDER BY created_at DESC, id DESC LIMIT ",
            AlertSort::UpdatedDesc => " ORDER BY updated_at DESC, id DESC LIMIT ",
            AlertSort::WorstLevelDesc => {
                " ORDER BY worst_level DESC, created_at DESC, id DESC LIMIT "
            }
        })
        .push_bind(limit as i64 + 1);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(alert_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(into_page(items, limit, |a| alert_cursor(q.sort, a)))
    }

    async fn record_alert_event(&self, event: &NewAlertEvent) -> Result<AlertRecord, StoreError> {
        let mut tx = self.pool.begin_with(WRITE).await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM alerts WHERE id = ?")
            .bind(event.alert_id)
            .fetch_optional(&mut *tx)
            .await?;
        let from = AlertStatus::parse(&status.ok_or(StoreError::AlertNotFound(event.alert_id))?)?;
        let to = event.kind.transition(from)?;
        if to != from {
            sqlx::query("UPDATE alerts SET status = ?, status_changed_at = ? WHERE id = ?")
                .bind(to.as_str())
                .bind(us(event.at))
                .bind(event.alert_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO alert_events (alert_id, kind, actor, at, from_address, note, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(event.alert_id)
        .bind(event.kind.as_str())
        .bind(text_without_nul(&event.actor))
        .bind(us(event.at))
        .bind(event.from_address.as_deref().map(text_without_nul))
        .bind(event.note.as_deref().map(text_without_nul))
        .bind(event.detail.as_ref().map(|d| d.to_string()))
        .execute(&mut *tx)
        .await?;
        let alert = Self::alert_in(&mut tx, event.alert_id)
            .await?
            .ok_or(StoreError::AlertNotFound(event.alert_id))?;
        tx.commit().await?;
        Ok(alert)
    }

    async fn alert_events(&self, alert_id: Uuid) -> Result<Vec<AlertEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, alert_id, kind, actor, at, from_address, note, detail \
             FROM alert_events WHERE alert_id = ? ORDER BY id",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                let detail: Option<String> = row.try_get("detail")?;
                Ok(AlertEvent {
                    id: row.try_get("id")?,
                    event: NewAlertEvent {
                        alert_id: row.try_get("alert_id")?,
                        kind: AlertEventKind::parse(&kind)?,
                        actor: row.try_get("actor")?,
                        at: ts(row.try_get("at")?)?,
                        from_address: row.try_get("from_address")?,
                        note: row.try_get("note")?,
                        detail: detail.map(|d| json("alert event detail", &d)).transpose()?,
                    },
                })
            })
            .collect()
    }

    async fn record_dead_letter(&self, letter: &DeadLetter) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO dead_letters (received_at, topic, reason, payload) \
             VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(us(letter.received_at))
        .bind(text_without_nul(&letter.topic))
        .bind(text_without_nul(&letter.reason))
        .bind(letter.payload.as_slice())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn dead_letter_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
            .fetch_one(&self.pool)
            .await?;
        Ok(to_u64(n))
    }

    async fn list_dead_letters(&self, limit: u32) -> Result<Vec<DeadLetterRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, received_at, topic, reason, payload FROM dead_letters \
             ORDER BY received_at DESC, id DESC LIMIT ?",
        )
        .bind(page_limit(limit) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetterRecord {
                    id: row.try_get("id")?,
                    letter: DeadLetter {
                        received_at: ts(row.try_get("received_at")?)?,
                        topic: row.try_get("topic")?,
                        reason: row.try_get("reason")?,
                        payload: row.try_get("payload")?,
                    },
                })
            })
            .collect()
    }

    async fn add_gateway(&self, new: &NewGateway) -> Result<GatewayRecord, StoreError> {
        validate_id("site", &new.site)?;
        validate_id("gateway", &new.gateway)?;
        let now = us(Utc::now());
        let mut tx = self.pool.begin_with(WRITE).await?;
        sqlx::query(
            "INSERT INTO sites (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&new.site)
        .bind(&new.site)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "INSERT INTO gateways (site, gateway, password_hash, public_key, created_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (site, gateway) DO NOTHING",
        )
        .bind(&new.site)
        .bind(&new.gateway)
        .bind(&new.password_hash)
        .bind(new.public_key.as_slice())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::GatewayExists {
                site: new.site.clone(),
                gateway: new.gateway.clone(),
            });
        }
        let row = sqlx::query(&format!(
            "SELECT {GATEWAY_COLUMNS} FROM gateways WHERE site = ? AND gateway = ?"
        ))
        .bind(&new.site)
        .bind(&new.gateway)
        .fetch_one(&mut *tx)
        .await?;
        let record = gateway_from_row(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    async fn list_gateways(&self) -> Result<Vec<GatewayRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GATEWAY_COLUMNS} FROM gateways ORDER BY site, gateway"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(gateway_from_row).collect()
    }

    async fn gateway(
        &self,
        site: &str,
        gateway: &str,
    ) -> Result<Option<GatewayRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GATEWAY_COLUMNS} FROM gateways WHERE site = ? AND gateway = ?"
        ))
        .bind(site)
        .bind(gateway)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(gateway_from_row).transpose()
    }

    async fn revoke_gateway(&self, site: &str, gateway: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE gateways SET revoked_at = ? \
             WHERE site = ? AND gateway = ? AND revoked_at IS NULL",
        )
        .bind(us(Utc::now()))
        .bind(site)
        .bind(gateway)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn update_gateway_status(
        &self,
        site: &str,
        gateway: &str,
        status: &AgentStatus,
        received_at: DateTime<Utc>,
    ) -> Result<StatusOutcome, StoreError> {
        // A status is kept for display: NUL (which jsonb refuses) becomes U+FFFD.
        let status_json = serde_json::to_string(status)
            .map(rows::json_without_nul)
            .map_err(|e| StoreError::corrupt("gateway status", e))?;
        let cameras_json = status
            .online
            .then(|| serde_json::to_string(&status.cameras).map(rows::json_without_nul))
            .transpose()
            .map_err(|e| StoreError::corrupt("gateway cameras", e))?;
        let model_json = status
            .model
            .as_ref()
            .map(|m| serde_json::to_string(m).map(rows::json_without_nul))
            .transpose()
            .map_err(|e| StoreError::corrupt("gateway model", e))?;
        let buffer = status.buffer.as_ref();
        let mut tx = self.pool.begin_with(WRITE).await?;
        let done = sqlx::query(
            "UPDATE gateways SET online = ?1, last_seen_at = ?2, \
             status_at = CASE WHEN status_at IS NULL OR ?3 > status_at THEN ?3 ELSE status_at END, \
             status_session_at = coalesce(?17, status_session_at), agent_version = ?4, \
             config_version = coalesce(?5, config_version), model = coalesce(?6, model), \
             buffer_depth = coalesce(?7, buffer_depth), buffer_bytes = coalesce(?8, buffer_bytes), \
             buffer_oldest_at = CASE WHEN ?9 THEN ?10 ELSE buffer_oldest_at END, \
             evicted_evidence = coalesce(?11, evicted_evidence), \
             evicted_findings = coalesce(?12, evicted_findings), \
             cameras = coalesce(?13, cameras), last_status = ?14 \
             WHERE site = ?15 AND gateway = ?16 \
             AND (status_at IS NULL OR ?3 > status_at \
                  OR (NOT ?1 AND ?17 IS NOT NULL \
                      AND (status_session_at IS NULL OR ?17 >= status_session_at)))",
        )
        .bind(status.online)
        .bind(us(received_at))
        .bind(us(status.ts))
        .bind(text_without_nul(&status.agent_version))
        .bind(status.config_version.map(i64::from))
        .bind(model_json)
        .bind(buffer.map(|b| to_i64(b.depth)))
        .bind(buffer.map(|b| to_i64(b.bytes)))
        .bind(buffer.is_some())
        .bind(buffer.and_then(|b| b.oldest_at).map(us))
        .bind(buffer.map(|b| to_i64(b.evicted.evidence)))
        .bind(buffer.map(|b| to_i64(b.evicted.findings)))
        .bind(cameras_json)
        .bind(status_json)
        .bind(site)
        .bind(gateway)
        .bind(status.session.map(us))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let last: Option<Option<i64>> =
                sqlx::query_scalar("SELECT status_at FROM gateways WHERE site = ? AND gateway = ?")
                    .bind(site)
                    .bind(gateway)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Ok(match last {
                None => StatusOutcome::NotEnrolled,
                Some(last) => StatusOutcome::Stale {
                    last: ts_opt(last)?.unwrap_or(status.ts),
                },
            });
        }
        if status.online {
            for camera in &status.cameras {
                sqlx::query(
                    "INSERT INTO cameras (site, gateway, camera, state, fps, last_frame_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (site, gateway, camera) DO UPDATE SET state = excluded.state, \
                     fps = excluded.fps, \
                     last_frame_at = coalesce(excluded.last_frame_at, cameras.last_frame_at), \
                     updated_at = excluded.updated_at",
                )
                .bind(site)
                .bind(gateway)
                .bind(text_without_nul(&camera.id))
                .bind(text_without_nul(&camera.state))
                .bind(if camera.fps.is_finite() { camera.fps } else { 0.0 })
                .bind(camera.last_frame_at.map(us))
                .bind(us(received_at))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(StatusOutcome::Applied)
    }

    async fn list_cameras(
        &self,
        site: &str,
        gateway: &str,
    ) -> Result<Vec<CameraRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT site, gateway, camera, state, fps, last_frame_at, updated_at FROM cameras \
             WHERE site = ? AND gateway = ? ORDER BY camera",
        )
        .bind(site)
        .bind(gateway)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CameraRecord {
                    site: row.try_get("site")?,
                    gateway: row.try_get("gateway")?,
                    camera: row.try_get("camera")?,
                    state: row.try_get("state")?,
                    fps: row.try_get("fps")?,
                    last_frame_at: ts_opt(row.try_get("last_frame_at")?)?,
                    updated_at: ts(row.try_get("updated_at")?)?,
                })
            })
            .collect()
    }

    async fn insert_telemetry(
        &self,
        site: &str,
        gateway: &str,
        t: &Telemetry,
    ) -> Result<bool, StoreError> {
        let sample = |v: Option<f64>| v.filter(|v| v.is_finite());
        let (cpu, gpu, latency) = (
            sample(t.cpu_temp_c),
            sample(t.gpu_temp_c),
            sample(t.analysis_latency_ms),
        );
        let done = sqlx::query(
            "INSERT INTO telemetry_minutes (site, gateway, bucket_start, samples, \
             cpu_temp_sum, cpu_temp_n, cpu_temp_max, gpu_temp_sum, gpu_temp_n, gpu_temp_max, \
             disk_free_min, latency_sum, latency_n, latency_max, frame_drops, first_ts, last_ts) \
             SELECT ?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16 \
             WHERE NOT EXISTS (SELECT 1 FROM telemetry_minutes \
                 WHERE site = ?1 AND gateway = ?2 AND bucket_start >= ?3 AND last_ts >= ?16) \
             ON CONFLICT (site, gateway, bucket_start) DO UPDATE SET \
             samples = telemetry_minutes.samples + 1, \
             cpu_temp_sum = telemetry_minutes.cpu_temp_sum + excluded.cpu_temp_sum, \
             cpu_temp_n = telemetry_minutes.cpu_temp_n + excluded.cpu_temp_n, \
             cpu_temp_max = coalesce(max(telemetry_minutes.cpu_temp_max, excluded.cpu_temp_max), \
                 telemetry_minutes.cpu_temp_max, excluded.cpu_temp_max), \
             gpu_temp_sum = telemetry_minutes.gpu_temp_sum + excluded.gpu_temp_sum, \
             gpu_temp_n = telemetry_minutes.gpu_temp_n + excluded.gpu_temp_n, \
             gpu_temp_max = coalesce(max(telemetry_minutes.gpu_temp_max, excluded.gpu_temp_max), \
                 telemetry_minutes.gpu_temp_max, excluded.gpu_temp_max), \
             disk_free_min = coalesce(min(telemetry_minutes.disk_free_min, excluded.disk_free_min), \
                 telemetry_minutes.disk_free_min, excluded.disk_free_min), \
             latency_sum = telemetry_minutes.latency_sum + excluded.latency_sum, \
             latency_n = telemetry_minutes.latency_n + excluded.latency_n, \
             latency_max = coalesce(max(telemetry_minutes.latency_max, excluded.latency_max), \
                 telemetry_minutes.latency_max, excluded.latency_max), \
             frame_drops = telemetry_minutes.frame_drops + excluded.frame_drops, \
             first_ts = min(telemetry_minutes.first_ts, excluded.first_ts), \
             last_ts = max(telemetry_minutes.last_ts, excluded.last_ts)",
        )
        .bind(site)
        .bind(gateway)
        .bind(us(minute_of(t.ts)))
        .bind(cpu.unwrap_or(0.0))
        .bind(i64::from(cpu.is_some()))
        .bind(cpu)
        .bind(gpu.unwrap_or(0.0))
        .bind(i64::from(gpu.is_some()))
        .bind(gpu)
        .bind(t.disk_free_bytes.map(to_i64))
        .bind(latency.unwrap_or(0.0))
        .bind(i64::from(latency.is_some()))
        .bind(latency)
        .bind(to_i64(t.frame_drops))
        .bind(us(t.ts))
        .bind(us(t.ts))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn telemetry(
        &self,
        site: &str,
        gateway: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<TelemetryMinute>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM telemetry_minutes WHERE site = ? AND gateway = ? \
             AND bucket_start >= ? AND bucket_start < ? ORDER BY bucket_start",
        )
        .bind(site)
        .bind(gateway)
        .bind(us(since))
        .bind(us(until))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(telemetry_from_row).collect()
    }

    async fn add_user(&self, new: &NewUser) -> Result<UserRecord, StoreError> {
        check_username(&new.username)?;
        let user = UserRecord {
            id: Uuid::now_v7(),
            username: new.username.clone(),
            password_hash: new.password_hash.clone(),
            role: new.role,
            created_at: rows::to_micros(Utc::now()),
            disabled_at: None,
        };
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(user.id)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(us(user.created_at))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            unique_error(e, || StoreError::UserExists {
                username: new.username.clone(),
            })
        })?;
        Ok(user)
    }

    async fn user(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = ?"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_user_disabled(&self, id: Uuid, disabled: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(WRITE).await?;
        let done = sqlx::query(
            "UPDATE users SET disabled_at = CASE WHEN ? THEN coalesce(disabled_at, ?) END \
             WHERE id = ?",
        )
        .bind(disabled)
        .bind(us(Utc::now()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            // Revoked, not just refused: re-enabling the user revives none of them.
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            )
            .bind(us(Utc::now()))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_user_role(&self, id: Uuid, role: Role) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET role = ? WHERE id = ?")
            .bind(role.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_session(&self, new: &NewSession) -> Result<SessionRecord, StoreError> {
        check_sha256("session token hash", &new.token_hash)?;
        let created_at = rows::to_micros(new.created_at);
        let session = SessionRecord {
            id: Uuid::now_v7(),
            user_id: new.user_id,
            csrf_token: new.csrf_token.clone(),
            created_at,
            expires_at: rows::to_micros(new.expires_at),
            last_seen_at: created_at,
            from_address: new
                .from_address
                .as_deref()
                .map(|a| text_without_nul(a).into_owned()),
        };
        sqlx::query(
            "INSERT INTO sessions (id, token_hash, user_id, csrf_token, created_at, expires_at, \
             last_seen_at, from_address) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(session.id)
        .bind(&new.token_hash)
        .bind(session.user_id)
        .bind(&session.csrf_token)
        .bind(us(session.created_at))
        .bind(us(session.expires_at))
        .bind(us(session.last_seen_at))
        .bind(&session.from_address)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            constraint_error(
                e,
                || StoreError::AlreadyExists {
                    what: "session",
                    id: "with this token hash".into(),
                },
                || StoreError::NotFound {
                    what: "user",
                    id: new.user_id.to_string(),
                },
            )
        })?;
        Ok(session)
    }

    async fn session_by_token_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
        let now = us(now);
        // A read first, so that unknown and expired tokens never take the write lock.
        let row = sqlx::query(
            "SELECT s.user_id FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = ? AND s.expires_at > ? AND u.disabled_at IS NULL",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if row.is_none() {
            return Ok(None);
        }
        let mut tx = self.pool.begin_with(WRITE).await?;
        // The same conditions again: the user may have been disabled since the read.
        let row = sqlx::query(&format!(
            "UPDATE sessions SET last_seen_at = max(last_seen_at, ?) \
             WHERE token_hash = ? AND expires_at > ? \
             AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL) \
             RETURNING {SESSION_COLUMNS}"
        ))
        .bind(now)
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let session = session_from_row(&row)?;
        let user = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
            .bind(session.user_id)
            .fetch_one(&mut *tx)
            .await?;
        let user = user_from_row(&user)?;
        tx.commit().await?;
        Ok(Some((session, user)))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(us(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn create_api_token(&self, new: &NewApiToken) -> Result<ApiTokenRecord, StoreError> {
        check_sha256("api token hash", &new.token_hash)?;
        let scopes = join_scopes(&new.scopes)?;
        let token = ApiTokenRecord {
            id: Uuid::now_v7(),
            user_id: new.user_id,
            name: text_without_nul(&new.name).into_owned(),
            scopes: new.scopes.clone(),
            created_at: rows::to_micros(Utc::now()),
            revoked_at: None,
            last_used_at: None,
            expires_at: new.expires_at.map(rows::to_micros),
        };
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, user_id, name, scopes, created_at, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(token.id)
        .bind(&new.token_hash)
        .bind(token.user_id)
        .bind(&token.name)
        .bind(scopes)
        .bind(us(token.created_at))
        .bind(token.expires_at.map(us))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            constraint_error(
                e,
                || StoreError::AlreadyExists {
                    what: "api token",
                    id: "with this hash".into(),
                },
                || StoreError::NotFound {
                    what: "user",
                    id: new.user_id.to_string(),
                },
            )
        })?;
        Ok(token)
    }

    async fn api_token_by_hash(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(ApiTokenRecord, UserRecord)>, StoreError> {
        // A read first, so that unknown and revoked tokens never take the write lock.
        let row = sqlx::query(
            "SELECT t.user_id FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = ? AND t.revoked_at IS NULL AND u.disabled_at IS NULL \
             AND (t.expires_at IS NULL OR t.expires_at > ?)",
        )
        .bind(token_hash)
        .bind(us(now))
        .fetch_optional(&self.pool)
        .await?;
        if row.is_none() {
            return Ok(None);
        }
        let now = us(now);
        let mut tx = self.pool.begin_with(WRITE).await?;
        let row = sqlx::query(&format!(
            "UPDATE api_tokens SET last_used_at = max(coalesce(last_used_at, ?), ?) \
             WHERE token_hash = ? AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > ?) \
             AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL) \
             RETURNING {API_TOKEN_COLUMNS}"
        ))
        .bind(now)
        .bind(now)
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token = api_token_from_row(&row)?;
        let user = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"))
            .bind(token.user_id)
            .fetch_one(&mut *tx)
            .await?;
        let user = user_from_row(&user)?;
        tx.commit().await?;
        Ok(Some((token, user)))
    }

    async fn list_api_tokens(&self, user_id: Uuid) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE user_id = ? \
             ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(api_token_from_row).collect()
    }

    async fn revoke_api_token(&self, id: Uuid) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(us(Utc::now()))
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_site(&self, new: &NewSite) -> Result<SiteRecord, StoreError> {
        validate_id("site", &new.id)?;
        let site = SiteRecord {
            id: new.id.clone(),
            name: text_without_nul(&new.name).into_owned(),
            kind: new.kind,
            created_at: rows::to_micros(Utc::now()),
        };
        sqlx::query("INSERT INTO sites (id, name, kind, created_at) VALUES (?, ?, ?, ?)")
            .bind(&site.id)
            .bind(&site.name)
            .bind(site.kind.as_str())
            .bind(us(site.created_at))
            .execute(&self.pool)
            .await
            .map_err(|e| {
                unique_error(e, || StoreError::AlreadyExists {
                    what: "site",
                    id: new.id.clone(),
                })
            })?;
        Ok(site)
    }

    async fn list_sites(&self) -> Result<Vec<SiteRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {SITE_COLUMNS} FROM sites ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(site_from_row).collect()
    }

    async fn site(&self, id: &str) -> Result<Option<SiteRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(site_from_row).transpose()
    }

    async fn update_site(&self, site: &NewSite) -> Result<bool, StoreError> {
        validate_id("site", &site.id)?;
        let done = sqlx::query("UPDATE sites SET name = ?, kind = ? WHERE id = ?")
            .bind(text_without_nul(&site.name))
            .bind(site.kind.as_str())
            .bind(&site.id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_site(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with(WRITE).await?;
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM structures WHERE site = ?) AS structures, \
             EXISTS (SELECT 1 FROM assets WHERE site = ?) AS assets, \
             EXISTS (SELECT 1 FROM gateways WHERE site = ?) AS gateways",
        )
        .bind(id)
        .bind(id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let used = [
            ("structures", row.try_get("structures")?),
            ("assets", row.try_get("assets")?),
            ("gateways", row.try_get("gateways")?),
        ];
        if let Some(err) = in_use("site", id, &used) {
            return Err(err);
        }
        let done = sqlx::query("DELETE FROM sites WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                foreign_key_error(e, || StoreError::InUse {
                    what: format!("site {id}"),
                })
            })?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_structure(&self, new: &NewStructure) -> Result<StructureRecord, StoreError> {
        check_structure_ids(new)?;
        let structure = StructureRecord {
            site: new.site.clone(),
            id: new.id.clone(),
            name: text_without_nul(&new.name).into_owned(),
            kind: new.kind,
            created_at: rows::to_micros(Utc::now()),
        };
        sqlx::query(
            "INSERT INTO structures (site, id, kind, name, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&structure.site)
        .bind(&structure.id)
        .bind(structure.kind.as_str())
        .bind(&structure.name)
        .bind(us(structure.created_at))
        .execute(&self.pool)
        .await
        .map_err(|e| {
            constraint_error(
                e,
                || StoreError::AlreadyExists {
                    what: "structure",
                    id: format!("{}/{}", new.site, new.id),
                },
                || StoreError::NotFound {
                    what: "site",
                    id: new.site.clone(),
                },
            )
        })?;
        Ok(structure)
    }

    async fn list_structures(&self, site: &str) -> Result<Vec<StructureRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {STRUCTURE_COLUMNS} FROM structures WHERE site = ? ORDER BY id"
        ))
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(structure_from_row).collect()
    }

    async fn structure(&self, site: &str, id: &str) -> Result<Option<StructureRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {STRUCTURE_COLUMNS} FROM structures WHERE site = ? AND id = ?"
        ))
        .bind(site)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(structure_from_row).transpose()
    }

    async fn update_structure(&self, structure: &NewStructure) -> Result<bool, StoreError> {
        check_structure_ids(structure)?;
        let done =
            sqlx::query("UPDATE structures SET name = ?, kind = ? WHERE site = ? AND id = ?")
                .bind(text_without_nul(&structure.name))
                .bind(structure.kind.as_str())
                .bind(&structure.site)
                .bind(&structure.id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_structure(&self, site: &str, id: &str) -> Result<bool, StoreError> {
        let key = format!("{site}/{id}");
        let mut tx = self.pool.begin_with(WRITE).await?;
        let assets: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM assets WHERE site = ? AND structure = ?)",
        )
        .bind(site)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(err) = in_use("structure", &key, &[("assets", assets)]) {
            return Err(err);
        }
        let done = sqlx::query("DELETE FROM structures WHERE site = ? AND id = ?")
            .bind(site)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                foreign_key_error(e, || StoreError::InUse {
                    what: format!("structure {key}"),
                })
            })?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn add_asset(&self, new: &NewAsset) -> Result<AssetRecord, StoreError> {
        check_asset_ids(new)?;
        let asset = AssetRecord {
            site: new.site.clone(),
            structure: new.structure.clone(),
            id: new.id.clone(),
            name: text_without_nul(&new.name).into_owned(),
            phase: new.phase,
            component_class: new
                .component_class
                .as_deref()
                .map(|c| text_without_nul(c).into_owned()),
            created_at: rows::to_micros(Utc::now()),
        };
        let done = sqlx::query(
            "INSERT INTO assets (site, id, structure, name, phase, component_class, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&asset.site)
        .bind(&asset.id)
        .bind(&asset.structure)
        .bind(&asset.name)
        .bind(asset.phase.map(Phase::as_str))
        .bind(&asset.component_class)
        .bind(us(asset.created_at))
        .execute(&self.pool)
        .await;
        match done {
            Ok(_) => Ok(asset),
            Err(e) if is_foreign_key_violation(&e) => Err(self.missing_parent(new).await),
            Err(e) => Err(unique_error(e, || StoreError::AlreadyExists {
                what: "asset",
                id: format!("{}/{}", new.site, new.id),
            })),
        }
    }

    async fn list_assets(&self, site: Option<&str>) -> Result<Vec<AssetRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ASSET_COLUMNS} FROM assets WHERE ? IS NULL OR site = ? ORDER BY site, id"
        ))
        .bind(site)
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(asset_from_row).collect()
    }

    async fn asset(&self, site: &str, id: &str) -> Result<Option<AssetRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ASSET_COLUMNS} FROM assets WHERE site = ? AND id = ?"
        ))
        .bind(site)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(asset_from_row).transpose()
    }

    async fn update_asset(&self, asset: &NewAsset) -> Result<bool, StoreError> {
        check_asset_ids(asset)?;
        let done = sqlx::query(
            "UPDATE assets SET structure = ?, name = ?, phase = ?, component_class = ? \
             WHERE site = ? AND id = ?",
        )
        .bind(&asset.structure)
        .bind(text_without_nul(&asset.name))
        .bind(asset.phase.map(Phase::as_str))
        .bind(asset.component_class.as_deref().map(text_without_nul))
        .bind(&asset.site)
        .bind(&asset.id)
        .execute(&self.pool)
        .await;
        match done {
            Ok(done) => Ok(done.rows_affected() > 0),
            Err(e) if is_foreign_key_violation(&e) => Err(self.missing_parent(asset).await),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_asset(&self, site: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM assets WHERE site = ? AND id = ?")
            .bind(site)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_evidence(&self, e: &EvidenceRecord) -> Result<bool, StoreError> {
        check_sha256("evidence sha256", &e.sha256)?;
        let done = sqlx::query(
            "INSERT INTO evidence (sha256, size_bytes, content_type, location, created_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&e.sha256)
        .bind(evidence_size(e.size)?)
        .bind(text_without_nul(&e.content_type))
        .bind(&e.location)
        .bind(us(e.created_at))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn evidence(&self, sha256: &str) -> Result<Option<EvidenceRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT sha256, size_bytes, content_type, location, created_at FROM evidence \
             WHERE sha256 = ?",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(EvidenceRecord {
                sha256: row.try_get("sha256")?,
                size: to_u64(row.try_get("size_bytes")?),
                content_type: row.try_get("content_type")?,
                location: row.try_get("location")?,
                created_at: ts(row.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        write_audit(&mut conn, event).await
    }

    async fn list_audit(&self, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, from_address, detail FROM audit_log \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(page_limit(limit) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let detail: String = row.try_get("detail")?;
                Ok(AuditRecord {
                    id: row.try_get("id")?,
                    event: AuditEvent {
                        at: ts(row.try_get("at")?)?,
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        target: row.try_get("target")?,
                        from_address: row.try_get("from_address")?,
                        detail: json("audit detail", &detail)?,
                    },
                })
            })
            .collect()
    }
}

/// `AND (col ILIKE p OR …)` for a contains-text filter: one bound pattern per column,
/// never text in the SQL.
fn push_contains(qb: &mut QueryBuilder<'_, Sqlite>, columns: &[&str], text: &str) {
    let pattern = contains_pattern(text);
    qb.push(" AND (");
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        qb.push(format!("{column} LIKE "))
            .push_bind(pattern.clone())
            .push(" ESCAPE '\\'");
    }
    qb.push(")");
}

impl SqliteStore {
    /// The findings (and an audit record, when given) in one transaction.
    async fn insert_findings_with(
        &self,
        findings: &[IngestedFinding],
        audit: Option<&AuditEvent>,
    ) -> Result<InsertReport, StoreError> {
        if findings.is_empty() {
            return Ok(InsertReport::default());
        }
        let batch = PreparedBatch::new(findings)?;
        let mut tx = self.pool.begin_with(WRITE).await?;
        let mut inserted = HashSet::with_capacity(batch.rows.len());
        for chunk in batch.rows.chunks(FINDING_ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::<Sqlite>::new(FINDING_INSERT);
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(&r.site)
                    .push_bind(&r.gateway)
                    .push_bind(&r.camera)
                    .push_bind(&r.asset)
                    .push_bind(&r.preset)
                    .push_bind(us(r.captured_at))
                    .push_bind(r.captured_offset_s)
                    .push_bind(us(r.observed_at))
                    .push_bind(us(r.received_at))
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
                    .push_bind(&r.doc);
            });
            qb.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
            let ids: Vec<Uuid> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            inserted.extend(ids);
        }
        let deltas = batch.alert_deltas(&inserted);
        let alerts = Self::insert_alerts(&mut tx, &deltas).await?;
        if let Some(event) = audit {
            write_audit(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(batch.report(&inserted, alerts))
    }
}

/// Appends one audit record on `conn` (a transaction's, or a pooled connection).
async fn write_audit(
    conn: &mut sqlx::SqliteConnection,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, from_address, detail) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(us(event.at))
    .bind(text_without_nul(&event.actor))
    .bind(text_without_nul(&event.action))
    .bind(text_without_nul(&event.target))
    .bind(event.from_address.as_deref().map(text_without_nul))
    .bind(rows::json_without_nul(event.detail.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}
