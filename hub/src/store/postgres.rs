//! [`PgStore`]: the fleet store.
//!
//! A batch is one `INSERT … SELECT FROM UNNEST($1::uuid[], …)`: one statement and 22
//! array parameters whatever the batch size, so Postgres' 65 535-parameter limit never
//! applies, and one round trip per batch. JSON goes over as text and is cast to jsonb.

use super::cursor::{Cursor, Listing};
use super::rows::{
    AlertDelta, PreparedBatch, API_TOKEN_COLUMNS, ASSET_COLUMNS, SITE_COLUMNS, STRUCTURE_COLUMNS,
    USER_COLUMNS,
};
use super::*;
use chitti_common::finding::{Finding, ModelIdentity};
use chitti_common::protocol::{validate_id, CameraStatus};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use std::collections::HashSet;
use std::str::FromStr;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

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
    updated_at = GREATEST(a.updated_at, EXCLUDED.updated_at) RETURNING id";

const ALERT_COLUMNS: &str = "id, site, gateway, camera, track_id, asset, component_class, \
    severity_table, status, worst_level, worst_max_c, last_level, last_max_c, \
    first_finding_id, first_finding_at, last_finding_id, last_finding_at, finding_count, \
    cleared_at, created_at, updated_at, status_changed_at, cool_exception";

const GATEWAY_COLUMNS: &str = "site, gateway, password_hash, public_key, created_at, \
    revoked_at, online, last_seen_at, status_at, agent_version, config_version, \
    model::text AS model, buffer_depth, buffer_bytes, buffer_oldest_at, evicted_evidence, \
    evicted_findings, cameras::text AS cameras, last_status::text AS last_status";

/// The Postgres store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

fn json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e))
}

fn level(v: i16) -> Result<u8, StoreError> {
    u8::try_from(v).map_err(|_| StoreError::corrupt("severity level", v))
}

fn at_us(v: i64) -> Result<DateTime<Utc>, StoreError> {
    rows::from_micros(v).ok_or_else(|| StoreError::corrupt("cursor timestamp", v))
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

    /// Merges the deltas into their alerts; returns the ids of the alerts touched.
    async fn insert_alerts(
        tx: &mut sqlx::PgConnection,
        deltas: &[AlertDelta],
    ) -> Result<Vec<Uuid>, StoreError> {
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
            .map(|r| r.try_get::<Uuid, _>(0).map_err(StoreError::from))
            .collect()
    }

    async fn alert_in(
        conn: &mut sqlx::PgConnection,
        id: Uuid,
    ) -> Result<Option<AlertRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
        row.as_ref().map(alert_from_row).transpose()
    }
}

/// The user's columns in a `RETURNING` that also returns a session's or token's.
const USER_RETURNING: &str = "u.id AS u_id, u.username AS u_username, \
    u.password_hash AS u_password_hash, u.role AS u_role, u.created_at AS u_created_at, \
    u.disabled_at AS u_disabled_at";

impl PgStore {
    /// Why an asset's foreign key failed: its site, or else its structure, is missing.
    async fn missing_parent(&self, asset: &NewAsset) -> StoreError {
        let site: Result<bool, _> =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sites WHERE id = $1)")
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

/// A user from a row, its columns named with `prefix` (see [`USER_RETURNING`]).
fn user_from_row(row: &PgRow, prefix: &str) -> Result<UserRecord, StoreError> {
    let col = |name: &str| format!("{prefix}{name}");
    let role: String = row.try_get(col("role").as_str())?;
    Ok(UserRecord {
        id: row.try_get(col("id").as_str())?,
        username: row.try_get(col("username").as_str())?,
        password_hash: row.try_get(col("password_hash").as_str())?,
        role: Role::parse_stored(&role)?,
        created_at: row.try_get(col("created_at").as_str())?,
        disabled_at: row.try_get(col("disabled_at").as_str())?,
    })
}

fn session_from_row(row: &PgRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        csrf_token: row.try_get("csrf_token")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        from_address: row.try_get("from_address")?,
    })
}

fn api_token_from_row(row: &PgRow) -> Result<ApiTokenRecord, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(ApiTokenRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        scopes: split_scopes(&scopes),
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn site_from_row(row: &PgRow) -> Result<SiteRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(SiteRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: SiteKind::parse_stored(&kind)?,
        created_at: row.try_get("created_at")?,
    })
}

fn structure_from_row(row: &PgRow) -> Result<StructureRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(StructureRecord {
        site: row.try_get("site")?,
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: StructureKind::parse_stored(&kind)?,
        created_at: row.try_get("created_at")?,
    })
}

fn asset_from_row(row: &PgRow) -> Result<AssetRecord, StoreError> {
    let phase: Option<String> = row.try_get("phase")?;
    Ok(AssetRecord {
        site: row.try_get("site")?,
        structure: row.try_get("structure")?,
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        phase: phase.as_deref().map(Phase::parse_stored).transpose()?,
        component_class: row.try_get("component_class")?,
        created_at: row.try_get("created_at")?,
    })
}

fn stored_finding(row: &PgRow) -> Result<StoredFinding, StoreError> {
    let doc: String = row.try_get("doc")?;
    Ok(StoredFinding {
        finding: json::<Finding>("finding", &doc)?,
        received_at: row.try_get("received_at")?,
        batch_id: row.try_get("batch_id")?,
    })
}

fn alert_from_row(row: &PgRow) -> Result<AlertRecord, StoreError> {
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
        first_finding_at: row.try_get("first_finding_at")?,
        last_finding_id: row.try_get("last_finding_id")?,
        last_finding_at: row.try_get("last_finding_at")?,
        finding_count: to_u64(row.try_get("finding_count")?),
        cleared_at: row.try_get("cleared_at")?,
        cool_exception: row.try_get("cool_exception")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        status_changed_at: row.try_get("status_changed_at")?,
    })
}

fn gateway_from_row(row: &PgRow) -> Result<GatewayRecord, StoreError> {
    let key: Vec<u8> = row.try_get("public_key")?;
    let public_key: [u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::corrupt("public key", format!("{} bytes", key.len())))?;
    let model: Option<String> = row.try_get("model")?;
    let cameras: Option<String> = row.try_get("cameras")?;
    let last_status: Option<String> = row.try_get("last_status")?;
    let depth: Option<i64> = row.try_get("buffer_depth")?;
    let counter = |name: &str| -> Result<u64, StoreError> {
        Ok(to_u64(row.try_get::<Option<i64>, _>(name)?.unwrap_or(0)))
    };
    let buffer = match depth {
        Some(depth) => Some(BufferStats {
            depth: to_u64(depth),
            bytes: counter("buffer_bytes")?,
            oldest_at: row.try_get("buffer_oldest_at")?,
            evicted_evidence: counter("evicted_evidence")?,
            evicted_findings: counter("evicted_findings")?,
        }),
        None => None,
    };
    let config_version: Option<i64> = row.try_get("config_version")?;
    Ok(GatewayRecord {
        site: row.try_get("site")?,
        gateway: row.try_get("gateway")?,
        password_hash: row.try_get("password_hash")?,
        public_key,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        online: row.try_get("online")?,
        last_seen_at: row.try_get("last_seen_at")?,
        status_at: row.try_get("status_at")?,
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

fn telemetry_from_row(row: &PgRow) -> Result<TelemetryMinute, StoreError> {
    let avg = |sum: &str, n: &str| -> Result<Option<f64>, StoreError> {
        let n: i64 = row.try_get(n)?;
        let sum: f64 = row.try_get(sum)?;
        Ok((n > 0).then(|| sum / n as f64))
    };
    Ok(TelemetryMinute {
        bucket_start: row.try_get("bucket_start")?,
        samples: to_u64(row.try_get("samples")?),
        cpu_temp_avg_c: avg("cpu_temp_sum", "cpu_temp_n")?,
        cpu_temp_max_c: row.try_get("cpu_temp_max")?,
        gpu_temp_avg_c: avg("gpu_temp_sum", "gpu_temp_n")?,
        gpu_temp_max_c: row.try_get("gpu_temp_max")?,
        disk_free_min_bytes: row.try_get::<Option<i64>, _>("disk_free_min")?.map(to_u64),
        analysis_latency_avg_ms: avg("latency_sum", "latency_n")?,
        analysis_latency_max_ms: row.try_get("latency_max")?,
        frame_drops: to_u64(row.try_get("frame_drops")?),
        first_ts: row.try_get("first_ts")?,
        last_ts: row.try_get("last_ts")?,
    })
}

impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
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
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
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
        let row = sqlx::query(
            "SELECT doc::text AS doc, received_at, batch_id FROM findings WHERE id = $1",
        )
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
        let mut qb = QueryBuilder::<Postgres>::new(
            "SELECT id, doc::text AS doc, received_at, batch_id FROM findings WHERE true",
        );
        if let Some(site) = &q.site {
            qb.push(" AND site = ")
                .push_bind(text_without_nul(site).into_owned());
        }
        if let Some(gateway) = &q.gateway {
            qb.push(" AND gateway = ")
                .push_bind(text_without_nul(gateway).into_owned());
        }
        if let Some(camera) = &q.camera {
            qb.push(" AND camera = ")
                .push_bind(text_without_nul(camera).into_owned());
        }
        if let Some(asset) = &q.asset {
            qb.push(" AND asset = ")
                .push_bind(text_without_nul(asset).into_owned());
        }
        if let Some(min) = q.min_level {
            qb.push(" AND severity_level >= ").push_bind(i16::from(min));
        }
        if let Some(since) = q.since {
            qb.push(" AND received_at >= ").push_bind(since);
        }
        if let Some(until) = q.until {
            qb.push(" AND received_at < ").push_bind(until);
        }
        if let Some(class) = &q.component_class {
            qb.push(" AND component_class = ")
                .push_bind(text_without_nul(class).into_owned());
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
                .push_bind(at_us(at)?)
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
            QueryBuilder::<Postgres>::new(format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE true"));
        if let Some(site) = &q.site {
            qb.push(" AND site = ")
                .push_bind(text_without_nul(site).into_owned());
        }
        if let Some(gateway) = &q.gateway {
            qb.push(" AND gateway = ")
                .push_bind(text_without_nul(gateway).into_owned());
        }
        if let Some(asset) = &q.asset {
            qb.push(" AND asset = ")
                .push_bind(text_without_nul(asset).into_owned());
        }
        if let Some(status) = q.status {
            qb.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(min) = q.min_level {
            qb.push(" AND worst_level >= ").push_bind(i16::from(min));
        }
        if let Some(class) = &q.component_class {
            qb.push(" AND component_class = ")
                .push_bind(text_without_nul(class).into_owned());
        }
        if let Some(since) = q.since {
            qb.push(" AND created_at >= ").push_bind(since);
        }
        if let Some(until) = q.until {
            qb.push(" AND created_at < ").push_bind(until);
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
                AlertSort::WorstLevelDesc => {
                    let rank = i16::try_from(rank).map_err(|_| StoreError::InvalidCursor)?;
                    qb.push(" AND (worst_level, created_at, id) < (")
                        .push_bind(rank)
                        .push(", ")
                }
            };
            qb.push_bind(at_us(at)?).push(", ").push_bind(id).push(")");
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
        let mut tx = self.pool.begin().await?;
        // FOR UPDATE: two operators acting at once serialize on the alert row.
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM alerts WHERE id = $1 FOR UPDATE")
                .bind(event.alert_id)
                .fetch_optional(&mut *tx)
                .await?;
        let from = AlertStatus::parse(&status.ok_or(StoreError::AlertNotFound(event.alert_id))?)?;
        let to = event.kind.transition(from)?;
        if to != from {
            sqlx::query("UPDATE alerts SET status = $1, status_changed_at = $2 WHERE id = $3")
                .bind(to.as_str())
                .bind(event.at)
                .bind(event.alert_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO alert_events (alert_id, kind, actor, at, from_address, note, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        )
        .bind(event.alert_id)
        .bind(event.kind.as_str())
        .bind(text_without_nul(&event.actor))
        .bind(event.at)
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
            "SELECT id, alert_id, kind, actor, at, from_address, note, detail::text AS detail \
             FROM alert_events WHERE alert_id = $1 ORDER BY id",
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
                        at: row.try_get("at")?,
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
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(letter.received_at)
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
             ORDER BY received_at DESC, id DESC LIMIT $1",
        )
        .bind(page_limit(limit) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetterRecord {
                    id: row.try_get("id")?,
                    letter: DeadLetter {
                        received_at: row.try_get("received_at")?,
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
        let now = rows::to_micros(Utc::now());
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sites (id, name, created_at) VALUES ($1, $1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&new.site)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "INSERT INTO gateways (site, gateway, password_hash, public_key, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (site, gateway) DO NOTHING",
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
            "SELECT {GATEWAY_COLUMNS} FROM gateways WHERE site = $1 AND gateway = $2"
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
            "SELECT {GATEWAY_COLUMNS} FROM gateways WHERE site = $1 AND gateway = $2"
        ))
        .bind(site)
        .bind(gateway)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(gateway_from_row).transpose()
    }

    async fn revoke_gateway(&self, site: &str, gateway: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE gateways SET revoked_at = $1 \
             WHERE site = $2 AND gateway = $3 AND revoked_at IS NULL",
        )
        .bind(Utc::now())
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE gateways SET online = $1, last_seen_at = $2, \
             status_at = CASE WHEN status_at IS NULL OR $3 > status_at THEN $3 ELSE status_at END, \
             status_session_at = COALESCE($17, status_session_at), agent_version = $4, config_version = COALESCE($5, config_version), \
             model = COALESCE($6::jsonb, model), \
             buffer_depth = COALESCE($7, buffer_depth), buffer_bytes = COALESCE($8, buffer_bytes), \
             buffer_oldest_at = CASE WHEN $9 THEN $10 ELSE buffer_oldest_at END, \
             evicted_evidence = COALESCE($11, evicted_evidence), \
             evicted_findings = COALESCE($12, evicted_findings), \
             cameras = COALESCE($13::jsonb, cameras), last_status = $14::jsonb \
             WHERE site = $15 AND gateway = $16 \
             AND (status_at IS NULL OR $3 > status_at \
                  OR (NOT $1 AND $17::timestamptz IS NOT NULL \
                      AND (status_session_at IS NULL OR $17 >= status_session_at)))",
        )
        .bind(status.online)
        .bind(received_at)
        .bind(status.ts)
        .bind(text_without_nul(&status.agent_version))
        .bind(status.config_version.map(i64::from))
        .bind(model_json)
        .bind(buffer.map(|b| to_i64(b.depth)))
        .bind(buffer.map(|b| to_i64(b.bytes)))
        .bind(buffer.is_some())
        .bind(buffer.and_then(|b| b.oldest_at))
        .bind(buffer.map(|b| to_i64(b.evicted.evidence)))
        .bind(buffer.map(|b| to_i64(b.evicted.findings)))
        .bind(cameras_json)
        .bind(status_json)
        .bind(site)
        .bind(gateway)
        .bind(status.session)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            let last: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
                "SELECT status_at FROM gateways WHERE site = $1 AND gateway = $2",
            )
            .bind(site)
            .bind(gateway)
            .fetch_optional(&mut *tx)
            .await?;
            return Ok(match last {
                None => StatusOutcome::NotEnrolled,
                Some(last) => StatusOutcome::Stale {
                    last: last.unwrap_or(status.ts),
                },
            });
        }
        if status.online && !status.cameras.is_empty() {
            let cams = &status.cameras;
            sqlx::query(
                "INSERT INTO cameras (site, gateway, camera, state, fps, last_frame_at, updated_at) \
                 SELECT $1, $2, u.camera, u.state, u.fps, u.last_frame_at, $3 \
                 FROM UNNEST($4::text[], $5::text[], $6::float8[], $7::timestamptz[]) \
                 AS u(camera, state, fps, last_frame_at) \
                 ON CONFLICT (site, gateway, camera) DO UPDATE SET state = EXCLUDED.state, \
                 fps = EXCLUDED.fps, \
                 last_frame_at = COALESCE(EXCLUDED.last_frame_at, cameras.last_frame_at), \
                 updated_at = EXCLUDED.updated_at",
            )
            .bind(site)
            .bind(gateway)
            .bind(received_at)
            .bind(cams.iter().map(|c| text_without_nul(&c.id).into_owned()).collect::<Vec<_>>())
            .bind(cams.iter().map(|c| text_without_nul(&c.state).into_owned()).collect::<Vec<_>>())
            .bind(cams.iter().map(|c| if c.fps.is_finite() { c.fps } else { 0.0 }).collect::<Vec<_>>())
            .bind(cams.iter().map(|c| c.last_frame_at).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
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
             WHERE site = $1 AND gateway = $2 ORDER BY camera",
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
                    last_frame_at: row.try_get("last_frame_at")?,
                    updated_at: row.try_get("updated_at")?,
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
            "INSERT INTO telemetry_minutes AS m (site, gateway, bucket_start, samples, \
             cpu_temp_sum, cpu_temp_n, cpu_temp_max, gpu_temp_sum, gpu_temp_n, gpu_temp_max, \
             disk_free_min, latency_sum, latency_n, latency_max, frame_drops, first_ts, last_ts) \
             SELECT $1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15 \
             WHERE NOT EXISTS (SELECT 1 FROM telemetry_minutes \
                 WHERE site = $1 AND gateway = $2 AND bucket_start >= $3 AND last_ts >= $15) \
             ON CONFLICT (site, gateway, bucket_start) DO UPDATE SET \
             samples = m.samples + 1, \
             cpu_temp_sum = m.cpu_temp_sum + EXCLUDED.cpu_temp_sum, \
             cpu_temp_n = m.cpu_temp_n + EXCLUDED.cpu_temp_n, \
             cpu_temp_max = GREATEST(m.cpu_temp_max, EXCLUDED.cpu_temp_max), \
             gpu_temp_sum = m.gpu_temp_sum + EXCLUDED.gpu_temp_sum, \
             gpu_temp_n = m.gpu_temp_n + EXCLUDED.gpu_temp_n, \
             gpu_temp_max = GREATEST(m.gpu_temp_max, EXCLUDED.gpu_temp_max), \
             disk_free_min = LEAST(m.disk_free_min, EXCLUDED.disk_free_min), \
             latency_sum = m.latency_sum + EXCLUDED.latency_sum, \
             latency_n = m.latency_n + EXCLUDED.latency_n, \
             latency_max = GREATEST(m.latency_max, EXCLUDED.latency_max), \
             frame_drops = m.frame_drops + EXCLUDED.frame_drops, \
             first_ts = LEAST(m.first_ts, EXCLUDED.first_ts), \
             last_ts = GREATEST(m.last_ts, EXCLUDED.last_ts)",
        )
        .bind(site)
        .bind(gateway)
        .bind(minute_of(t.ts))
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
        .bind(t.ts)
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
            "SELECT * FROM telemetry_minutes WHERE site = $1 AND gateway = $2 \
             AND bucket_start >= $3 AND bucket_start < $4 ORDER BY bucket_start",
        )
        .bind(site)
        .bind(gateway)
        .bind(since)
        .bind(until)
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
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.id)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(user.created_at)
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
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|r| user_from_row(r, "")).transpose()
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| user_from_row(r, "")).transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        // COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username COLLATE \"C\""
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| user_from_row(r, "")).collect()
    }

    async fn set_user_disabled(&self, id: Uuid, disabled: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET disabled_at = CASE WHEN $1 THEN COALESCE(disabled_at, $2) END \
             WHERE id = $3",
        )
        .bind(disabled)
        .bind(rows::to_micros(Utc::now()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            // Revoked, not just refused: re-enabling the user revives none of them.
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(rows::to_micros(Utc::now()))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_user_role(&self, id: Uuid, role: Role) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
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
             last_seen_at, from_address) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(session.id)
        .bind(&new.token_hash)
        .bind(session.user_id)
        .bind(&session.csrf_token)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.last_seen_at)
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
        // One statement: the checks and the update see the same rows.
        let row = sqlx::query(&format!(
            "UPDATE sessions s SET last_seen_at = GREATEST(s.last_seen_at, $2) \
             FROM users u WHERE s.token_hash = $1 AND s.expires_at > $2 \
             AND u.id = s.user_id AND u.disabled_at IS NULL \
             RETURNING s.id, s.user_id, s.csrf_token, s.created_at, s.expires_at, \
             s.last_seen_at, s.from_address, {USER_RETURNING}"
        ))
        .bind(token_hash)
        .bind(rows::to_micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((session_from_row(&row)?, user_from_row(&row, "u_")?)))
            .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(rows::to_micros(now))
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
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token.id)
        .bind(&new.token_hash)
        .bind(token.user_id)
        .bind(&token.name)
        .bind(scopes)
        .bind(token.created_at)
        .bind(token.expires_at)
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
        let row = sqlx::query(&format!(
            "UPDATE api_tokens t SET last_used_at = GREATEST(t.last_used_at, $2) \
             FROM users u WHERE t.token_hash = $1 AND t.revoked_at IS NULL \
             AND (t.expires_at IS NULL OR t.expires_at > $2) \
             AND u.id = t.user_id AND u.disabled_at IS NULL \
             RETURNING t.id, t.user_id, t.name, t.scopes, t.created_at, t.revoked_at, \
             t.last_used_at, t.expires_at, {USER_RETURNING}"
        ))
        .bind(token_hash)
        .bind(rows::to_micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((api_token_from_row(&row)?, user_from_row(&row, "u_")?)))
            .transpose()
    }

    async fn list_api_tokens(&self, user_id: Uuid) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 \
             ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(api_token_from_row).collect()
    }

    async fn revoke_api_token(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(rows::to_micros(Utc::now()))
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
        sqlx::query("INSERT INTO sites (id, name, kind, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&site.id)
            .bind(&site.name)
            .bind(site.kind.as_str())
            .bind(site.created_at)
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
        let rows = sqlx::query(&format!(
            "SELECT {SITE_COLUMNS} FROM sites ORDER BY id COLLATE \"C\""
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(site_from_row).collect()
    }

    async fn site(&self, id: &str) -> Result<Option<SiteRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {SITE_COLUMNS} FROM sites WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(site_from_row).transpose()
    }

    async fn update_site(&self, site: &NewSite) -> Result<bool, StoreError> {
        validate_id("site", &site.id)?;
        let done = sqlx::query("UPDATE sites SET name = $1, kind = $2 WHERE id = $3")
            .bind(text_without_nul(&site.name))
            .bind(site.kind.as_str())
            .bind(&site.id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_site(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Lock the site first, so that nothing is added under it between the check and
        // the delete (inserting a child takes a KEY SHARE lock on it).
        let exists = sqlx::query("SELECT 1 FROM sites WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM structures WHERE site = $1) AS structures, \
             EXISTS (SELECT 1 FROM assets WHERE site = $1) AS assets, \
             EXISTS (SELECT 1 FROM gateways WHERE site = $1) AS gateways",
        )
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
        let done = sqlx::query("DELETE FROM sites WHERE id = $1")
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
            "INSERT INTO structures (site, id, kind, name, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&structure.site)
        .bind(&structure.id)
        .bind(structure.kind.as_str())
        .bind(&structure.name)
        .bind(structure.created_at)
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
            "SELECT {STRUCTURE_COLUMNS} FROM structures WHERE site = $1 ORDER BY id COLLATE \"C\""
        ))
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(structure_from_row).collect()
    }

    async fn structure(&self, site: &str, id: &str) -> Result<Option<StructureRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {STRUCTURE_COLUMNS} FROM structures WHERE site = $1 AND id = $2"
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
            sqlx::query("UPDATE structures SET name = $1, kind = $2 WHERE site = $3 AND id = $4")
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
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM structures WHERE site = $1 AND id = $2 FOR UPDATE")
            .bind(site)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        let assets: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM assets WHERE site = $1 AND structure = $2)",
        )
        .bind(site)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(err) = in_use("structure", &key, &[("assets", assets)]) {
            return Err(err);
        }
        let done = sqlx::query("DELETE FROM structures WHERE site = $1 AND id = $2")
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
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&asset.site)
        .bind(&asset.id)
        .bind(&asset.structure)
        .bind(&asset.name)
        .bind(asset.phase.map(Phase::as_str))
        .bind(&asset.component_class)
        .bind(asset.created_at)
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
            "SELECT {ASSET_COLUMNS} FROM assets WHERE $1::text IS NULL OR site = $1 \
             ORDER BY site COLLATE \"C\", id COLLATE \"C\""
        ))
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(asset_from_row).collect()
    }

    async fn asset(&self, site: &str, id: &str) -> Result<Option<AssetRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ASSET_COLUMNS} FROM assets WHERE site = $1 AND id = $2"
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
            "UPDATE assets SET structure = $1, name = $2, phase = $3, component_class = $4 \
             WHERE site = $5 AND id = $6",
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
        let done = sqlx::query("DELETE FROM assets WHERE site = $1 AND id = $2")
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
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&e.sha256)
        .bind(evidence_size(e.size)?)
        .bind(text_without_nul(&e.content_type))
        .bind(&e.location)
        .bind(rows::to_micros(e.created_at))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn evidence(&self, sha256: &str) -> Result<Option<EvidenceRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT sha256, size_bytes, content_type, location, created_at FROM evidence \
             WHERE sha256 = $1",
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
                created_at: row.try_get("created_at")?,
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
            "SELECT id, at, actor, action, target, from_address, detail::text AS detail \
             FROM audit_log ORDER BY id DESC LIMIT $1",
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
                        at: row.try_get("at")?,
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
fn push_contains(qb: &mut QueryBuilder<'_, Postgres>, columns: &[&str], text: &str) {
    let pattern = contains_pattern(text);
    qb.push(" AND (");
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        qb.push(format!("{column} ILIKE "))
            .push_bind(pattern.clone())
            .push(" ESCAPE '\\'");
    }
    qb.push(")");
}

impl PgStore {
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
        let rows = &batch.rows;
        let text = |f: fn(&rows::FindingRow) -> &str| rows.iter().map(f).collect::<Vec<_>>();
        let maybe =
            |f: fn(&rows::FindingRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
        let mut tx = self.pool.begin().await?;
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
        let inserted: HashSet<Uuid> = ids.into_iter().collect();
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
async fn write_audit(conn: &mut sqlx::PgConnection, event: &AuditEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, from_address, detail) \
         VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
    )
    .bind(rows::to_micros(event.at))
    .bind(text_without_nul(&event.actor))
    .bind(text_without_nul(&event.action))
    .bind(text_without_nul(&event.target))
    .bind(event.from_address.as_deref().map(text_without_nul))
    .bind(rows::json_without_nul(event.detail.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}
