//! The fleet: enrolled gateways, the status and cameras they report, and their
//! telemetry, downsampled to minutes.
//!
//! Gateway MQTT usernames are `{site}/{gateway}` ([`gateway_username`]). A status or
//! telemetry sample is applied only when it is fresh, and the freshness check is part of
//! the statement that writes it, so that concurrent messages cannot both win.

use super::sql::{Row, Sql};
use super::*;
use chitti_common::finding::ModelIdentity;
use chitti_common::protocol::{validate_id, CameraStatus};

const GATEWAY_COLUMNS: &str = "site, gateway, password_hash, public_key, created_at, \
    revoked_at, online, last_seen_at, status_at, agent_version, config_version, model, \
    buffer_depth, buffer_bytes, buffer_oldest_at, evicted_evidence, evicted_findings, \
    cameras, last_status, clock_offset_ms, clock_offset_prev_ms, evicted_at";

/// Gateways, their cameras and telemetry.
pub trait FleetStore: Backed {
    /// Enrols a gateway (creating its site row when needed). An existing (site,
    /// gateway), revoked or not, is [`StoreError::GatewayExists`].
    fn add_gateway(
        &self,
        new: &NewGateway,
    ) -> impl Future<Output = Result<GatewayRecord, StoreError>> + Send {
        async move {
            validate_id("site", &new.site)?;
            validate_id("gateway", &new.gateway)?;
            let now = rows::to_micros(Utc::now());
            let mut tx = self.db().begin_write().await?;
            tx.execute(
                Sql::new(
                    "INSERT INTO sites (id, name, created_at) VALUES ($1, $1, $2) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&new.site)
                .bind(now),
            )
            .await?;
            let done = tx
                .execute(
                    Sql::new(
                        "INSERT INTO gateways (site, gateway, password_hash, public_key, \
                         created_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (site, gateway) DO NOTHING",
                    )
                    .bind(&new.site)
                    .bind(&new.gateway)
                    .bind(&new.password_hash)
                    .bind(new.public_key.as_slice())
                    .bind(now),
                )
                .await?;
            if done == 0 {
                return Err(StoreError::GatewayExists {
                    site: new.site.clone(),
                    gateway: new.gateway.clone(),
                });
            }
            let record = gateway_from_row(
                &tx.fetch_one(gateway_by_key(&new.site, &new.gateway))
                    .await?,
            )?;
            tx.commit().await?;
            Ok(record)
        }
    }

    /// Every gateway, revoked ones included, by site and gateway id.
    fn list_gateways(&self) -> impl Future<Output = Result<Vec<GatewayRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {GATEWAY_COLUMNS} FROM gateways ORDER BY site, gateway"
            ));
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(gateway_from_row)
                .collect()
        }
    }

    /// One gateway.
    fn gateway(
        &self,
        site: &str,
        gateway: &str,
    ) -> impl Future<Output = Result<Option<GatewayRecord>, StoreError>> + Send {
        async move {
            let row = self
                .db()
                .fetch_optional(gateway_by_key(site, gateway))
                .await?;
            row.as_ref().map(gateway_from_row).transpose()
        }
    }

    /// The gateway an MQTT username (`{site}/{gateway}`) names; `None` for an unknown
    /// or malformed username. Revoked gateways are returned: check
    /// [`GatewayRecord::is_revoked`].
    fn gateway_by_username(
        &self,
        username: &str,
    ) -> impl Future<Output = Result<Option<GatewayRecord>, StoreError>> + Send {
        async move {
            match parse_gateway_username(username) {
                Some((site, gateway)) => self.gateway(site, gateway).await,
                None => Ok(None),
            }
        }
    }

    /// Revokes a gateway (sets `revoked_at`, keeps the record). `false` when there is
    /// no such gateway or it was already revoked.
    fn revoke_gateway(
        &self,
        site: &str,
        gateway: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "UPDATE gateways SET revoked_at = $1 \
                 WHERE site = $2 AND gateway = $3 AND revoked_at IS NULL",
            )
            .bind(rows::to_micros(Utc::now()))
            .bind(site)
            .bind(gateway);
            Ok(self.db().execute(sql).await? > 0)
        }
    }

    /// Records a verified `/status` (or Last Will) when it is fresh: its `ts` is newer
    /// than `status_at`, or it is an offline status whose `session` is the current one
    /// or newer (the Last Will, stamped at agent start, so older than the statuses of
    /// its run; it does not move `status_at` back). The check and the write are one
    /// statement, so concurrent statuses cannot both win. `last_seen_at` is
    /// `received_at`; absent fields (no buffer, no model) keep their previous value, and
    /// the camera list is replaced, and cameras upserted, only by an online status.
    fn update_gateway_status(
        &self,
        site: &str,
        gateway: &str,
        status: &AgentStatus,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<StatusOutcome, StoreError>> + Send {
        async move {
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
            let update = Sql::new(
                "UPDATE gateways SET online = $1, last_seen_at = $2, \
                 status_at = CASE WHEN status_at IS NULL OR $3 > status_at THEN $3 \
                     ELSE status_at END, \
                 status_session_at = coalesce($17, status_session_at), agent_version = $4, \
                 config_version = coalesce($5, config_version), model = coalesce($6, model), \
                 buffer_depth = coalesce($7, buffer_depth), \
                 buffer_bytes = coalesce($8, buffer_bytes), \
                 buffer_oldest_at = CASE WHEN $9 THEN $10 ELSE buffer_oldest_at END, \
                 evicted_evidence = coalesce($11, evicted_evidence), \
                 evicted_findings = coalesce($12, evicted_findings), \
                 cameras = coalesce($13, cameras), last_status = $14, \
                 clock_offset_prev_ms = CASE WHEN $1 THEN clock_offset_ms \
                     ELSE clock_offset_prev_ms END, \
                 clock_offset_ms = CASE WHEN $1 THEN $18 ELSE clock_offset_ms END, \
                 evicted_at = CASE WHEN coalesce($11, 0) + coalesce($12, 0) > \
                     CASE WHEN status_session_at IS NOT DISTINCT FROM $17 \
                         THEN coalesce(evicted_evidence, 0) + coalesce(evicted_findings, 0) \
                         ELSE 0 END \
                     THEN $2 ELSE evicted_at END \
                 WHERE site = $15 AND gateway = $16 \
                 AND (status_at IS NULL OR $3 > status_at \
                      OR (NOT $1 AND $17 IS NOT NULL \
                          AND (status_session_at IS NULL OR $17 >= status_session_at)))",
            )
            .bind(status.online)
            .bind(received_at)
            .bind(status.ts)
            .bind(text_without_nul(&status.agent_version))
            .bind(status.config_version.map(i64::from))
            .bind(sql::json_arg(model_json))
            .bind(buffer.map(|b| to_i64(b.depth)))
            .bind(buffer.map(|b| to_i64(b.bytes)))
            .bind(buffer.is_some())
            .bind(buffer.and_then(|b| b.oldest_at))
            .bind(buffer.map(|b| to_i64(b.evicted.evidence)))
            .bind(buffer.map(|b| to_i64(b.evicted.findings)))
            .bind(sql::json_arg(cameras_json))
            .bind(sql::json_arg(Some(status_json)))
            .bind(site)
            .bind(gateway)
            .bind(status.session)
            .bind(clock_offset_ms(status.ts, received_at));
            let mut tx = self.db().begin_write().await?;
            if tx.execute(update).await? == 0 {
                let last = tx
                    .fetch_optional(
                        Sql::new("SELECT status_at FROM gateways WHERE site = $1 AND gateway = $2")
                            .bind(site)
                            .bind(gateway),
                    )
                    .await?;
                return Ok(match last {
                    None => StatusOutcome::NotEnrolled,
                    Some(row) => StatusOutcome::Stale {
                        last: row.opt_time("status_at")?.unwrap_or(status.ts),
                    },
                });
            }
            if status.online {
                for camera in &status.cameras {
                    let upsert = Sql::new(
                        "INSERT INTO cameras (site, gateway, camera, state, fps, last_frame_at, \
                         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (site, gateway, camera) DO UPDATE SET \
                         state = excluded.state, fps = excluded.fps, \
                         last_frame_at = coalesce(excluded.last_frame_at, cameras.last_frame_at), \
                         updated_at = excluded.updated_at",
                    )
                    .bind(site)
                    .bind(gateway)
                    .bind(text_without_nul(&camera.id))
                    .bind(text_without_nul(&camera.state))
                    .bind(if camera.fps.is_finite() {
                        camera.fps
                    } else {
                        0.0
                    })
                    .bind(camera.last_frame_at)
                    .bind(received_at);
                    tx.execute(upsert).await?;
                }
            }
            tx.commit().await?;
            Ok(StatusOutcome::Applied)
        }
    }

    /// Every camera a gateway has reported, by camera id.
    fn list_cameras(
        &self,
        site: &str,
        gateway: &str,
    ) -> impl Future<Output = Result<Vec<CameraRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT site, gateway, camera, state, fps, last_frame_at, updated_at \
                 FROM cameras WHERE site = $1 AND gateway = $2 ORDER BY camera",
            )
            .bind(site)
            .bind(gateway);
            let rows = self.db().fetch_all(sql).await?;
            rows.iter()
                .map(|row| {
                    Ok(CameraRecord {
                        site: row.get("site")?,
                        gateway: row.get("gateway")?,
                        camera: row.get("camera")?,
                        state: row.get("state")?,
                        fps: row.get("fps")?,
                        last_frame_at: row.opt_time("last_frame_at")?,
                        updated_at: row.time("updated_at")?,
                    })
                })
                .collect()
        }
    }

    /// Adds a telemetry sample to its minute (see [`TelemetryMinute`] for the rule),
    /// only when it is newer than every sample of the gateway stored so far (a replay
    /// adds nothing). `false` when it was not.
    fn insert_telemetry(
        &self,
        site: &str,
        gateway: &str,
        t: &Telemetry,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let db = self.db();
            let sample = |v: Option<f64>| v.filter(|v| v.is_finite());
            let (cpu, gpu, latency) = (
                sample(t.cpu_temp_c),
                sample(t.gpu_temp_c),
                sample(t.analysis_latency_ms),
            );
            let text = match db.backend() {
                Backend::Sqlite => TELEMETRY_INSERT_SQLITE,
                Backend::Postgres => TELEMETRY_INSERT_POSTGRES,
            };
            let sql = Sql::new(text)
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
                .bind(t.ts);
            Ok(db.execute(sql).await? == 1)
        }
    }

    /// Marks a gateway offline because nothing was heard from it since `heard_before`
    /// (as its Last Will would have): only if it is still online and still silent, so a
    /// status arriving meanwhile wins. `true` when it was marked.
    fn mark_silent_offline(
        &self,
        site: &str,
        gateway: &str,
        heard_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "UPDATE gateways SET online = $1 WHERE site = $2 AND gateway = $3 \
                 AND online AND last_seen_at < $4",
            )
            .bind(false)
            .bind(site)
            .bind(gateway)
            .bind(heard_before);
            Ok(self.db().execute(sql).await? > 0)
        }
    }

    /// Notes a message other than a status (telemetry) heard from a gateway:
    /// `last_seen_at` moves forward to `received_at` and the clock offset is measured
    /// again from the message's own `sent_at`.
    fn heard_from(
        &self,
        site: &str,
        gateway: &str,
        sent_at: DateTime<Utc>,
        received_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "UPDATE gateways SET clock_offset_prev_ms = clock_offset_ms, \
                 clock_offset_ms = $1, last_seen_at = CASE \
                 WHEN last_seen_at IS NULL OR last_seen_at < $2 THEN $2 ELSE last_seen_at END \
                 WHERE site = $3 AND gateway = $4",
            )
            .bind(clock_offset_ms(sent_at, received_at))
            .bind(received_at)
            .bind(site)
            .bind(gateway);
            self.db().execute(sql).await?;
            Ok(())
        }
    }

    /// A gateway's telemetry minutes with `since <= bucket_start < until`, oldest first.
    fn telemetry(
        &self,
        site: &str,
        gateway: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<TelemetryMinute>, StoreError>> + Send {
        telemetry_rows(self.db(), "telemetry_minutes", site, gateway, since, until)
    }

    /// A gateway's hourly telemetry (minutes rolled up by retention) with
    /// `since <= bucket_start < until`, oldest first; the same shape as minutes.
    fn telemetry_hours(
        &self,
        site: &str,
        gateway: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<TelemetryMinute>, StoreError>> + Send {
        telemetry_rows(self.db(), "telemetry_hours", site, gateway, since, until)
    }
}

impl<T: Backed> FleetStore for T {}

// The telemetry upsert, per engine: SQLite's two-argument min()/max() return NULL when
// either argument is NULL (hence the coalesce()), Postgres' LEAST/GREATEST ignore NULLs.
// Both insert only a sample newer than every stored one of the gateway.
const TELEMETRY_INSERT_SQLITE: &str = "INSERT INTO telemetry_minutes (site, gateway, \
    bucket_start, samples, cpu_temp_sum, cpu_temp_n, cpu_temp_max, gpu_temp_sum, gpu_temp_n, \
    gpu_temp_max, disk_free_min, latency_sum, latency_n, latency_max, frame_drops, first_ts, \
    last_ts) \
    SELECT $1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15 \
    WHERE NOT EXISTS (SELECT 1 FROM telemetry_minutes \
        WHERE site = $1 AND gateway = $2 AND bucket_start >= $3 AND last_ts >= $15) \
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
    last_ts = max(telemetry_minutes.last_ts, excluded.last_ts)";

const TELEMETRY_INSERT_POSTGRES: &str = "INSERT INTO telemetry_minutes AS m (site, gateway, \
    bucket_start, samples, cpu_temp_sum, cpu_temp_n, cpu_temp_max, gpu_temp_sum, gpu_temp_n, \
    gpu_temp_max, disk_free_min, latency_sum, latency_n, latency_max, frame_drops, first_ts, \
    last_ts) \
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
    last_ts = GREATEST(m.last_ts, EXCLUDED.last_ts)";

/// A gateway's rows of `table` (minutes or hours) in `since..until`, oldest first.
async fn telemetry_rows(
    db: Db<'_>,
    table: &'static str,
    site: &str,
    gateway: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<TelemetryMinute>, StoreError> {
    let sql = Sql::new(format!(
        "SELECT * FROM {table} WHERE site = $1 AND gateway = $2 \
         AND bucket_start >= $3 AND bucket_start < $4 ORDER BY bucket_start"
    ))
    .bind(site)
    .bind(gateway)
    .bind(since)
    .bind(until);
    db.fetch_all(sql)
        .await?
        .iter()
        .map(telemetry_from_row)
        .collect()
}

/// The gateway's clock against the hub's: its message's `ts` minus the hub's receipt, in
/// milliseconds (transit time makes it read slightly behind).
fn clock_offset_ms(sent_at: DateTime<Utc>, received_at: DateTime<Utc>) -> i64 {
    (sent_at - received_at).num_milliseconds()
}

fn gateway_by_key(site: &str, gateway: &str) -> Sql {
    Sql::new(format!(
        "SELECT {GATEWAY_COLUMNS} FROM gateways WHERE site = $1 AND gateway = $2"
    ))
    .bind(site)
    .bind(gateway)
}

fn gateway_from_row(row: &Row) -> Result<GatewayRecord, StoreError> {
    let key: Vec<u8> = row.get("public_key")?;
    let public_key: [u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::corrupt("public key", format!("{} bytes", key.len())))?;
    let counter = |name: &str| -> Result<u64, StoreError> {
        Ok(to_u64(row.get::<Option<i64>>(name)?.unwrap_or(0)))
    };
    let buffer = match row.get::<Option<i64>>("buffer_depth")? {
        Some(depth) => Some(BufferStats {
            depth: to_u64(depth),
            bytes: counter("buffer_bytes")?,
            oldest_at: row.opt_time("buffer_oldest_at")?,
            evicted_evidence: counter("evicted_evidence")?,
            evicted_findings: counter("evicted_findings")?,
        }),
        None => None,
    };
    let config_version: Option<i64> = row.get("config_version")?;
    Ok(GatewayRecord {
        site: row.get("site")?,
        gateway: row.get("gateway")?,
        password_hash: row.get("password_hash")?,
        public_key,
        created_at: row.time("created_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        online: row.get("online")?,
        last_seen_at: row.opt_time("last_seen_at")?,
        status_at: row.opt_time("status_at")?,
        agent_version: row.get("agent_version")?,
        config_version: config_version.and_then(|v| u32::try_from(v).ok()),
        model: row.opt_json::<ModelIdentity>("model", "gateway model")?,
        buffer,
        cameras: row
            .opt_json::<Vec<CameraStatus>>("cameras", "gateway cameras")?
            .unwrap_or_default(),
        last_status: row.opt_json::<AgentStatus>("last_status", "gateway status")?,
        clock_offset_ms: row.get("clock_offset_ms")?,
        clock_offset_prev_ms: row.get("clock_offset_prev_ms")?,
        evicted_at: row.opt_time("evicted_at")?,
    })
}

fn telemetry_from_row(row: &Row) -> Result<TelemetryMinute, StoreError> {
    let avg = |sum: &str, n: &str| -> Result<Option<f64>, StoreError> {
        let n: i64 = row.get(n)?;
        let sum: f64 = row.get(sum)?;
        Ok((n > 0).then(|| sum / n as f64))
    };
    Ok(TelemetryMinute {
        bucket_start: row.time("bucket_start")?,
        samples: row.count("samples")?,
        cpu_temp_avg_c: avg("cpu_temp_sum", "cpu_temp_n")?,
        cpu_temp_max_c: row.get("cpu_temp_max")?,
        gpu_temp_avg_c: avg("gpu_temp_sum", "gpu_temp_n")?,
        gpu_temp_max_c: row.get("gpu_temp_max")?,
        disk_free_min_bytes: row.get::<Option<i64>>("disk_free_min")?.map(to_u64),
        analysis_latency_avg_ms: avg("latency_sum", "latency_n")?,
        analysis_latency_max_ms: row.get("latency_max")?,
        frame_drops: row.count("frame_drops")?,
        first_ts: row.time("first_ts")?,
        last_ts: row.time("last_ts")?,
    })
}
