//! What the retention job removes, a bounded batch per transaction, and what keeps
//! data: holds (legal holds, kept reports), open alerts, references to evidence; the
//! lease that lets one replica run the job; the record of runs.
//!
//! Every removal re-checks its conditions in the statement that removes (a finding
//! whose alert reopened between the scan and the delete stays). Each batch is its own
//! short transaction, so ingest waits at most one batch (SQLite has one writer).

use super::sql::{Row, Sql};
use super::*;

/// A finding is protected: its alert is not resolved, or a hold covers it. `f` is the
/// finding's alias.
const FINDING_PROTECTED: &str = "(EXISTS (SELECT 1 FROM alerts a WHERE a.site = f.site \
     AND a.gateway = f.gateway AND a.camera = f.camera AND a.track_id = f.track_id \
     AND a.status <> 'resolved') \
     OR EXISTS (SELECT 1 FROM retention_holds h WHERE h.released_at IS NULL \
     AND (h.site IS NULL OR h.site = f.site) AND (h.asset IS NULL OR h.asset = f.asset) \
     AND (h.from_at IS NULL OR f.observed_at >= h.from_at) \
     AND (h.until_at IS NULL OR f.observed_at < h.until_at)))";

/// Nothing refers to evidence `e`: no finding, no "verified fixed" resolution.
fn evidence_unreferenced(backend: Backend) -> String {
    let fixed = match backend {
        Backend::Sqlite => "json_extract(ev.detail, '$.verified_fixed_sha256')",
        Backend::Postgres => "(ev.detail->>'verified_fixed_sha256')",
    };
    format!(
        "NOT EXISTS (SELECT 1 FROM findings f WHERE f.evidence_sha256 = e.sha256) \
         AND NOT EXISTS (SELECT 1 FROM alert_events ev WHERE {fixed} = e.sha256)"
    )
}

/// Where a findings scan stopped: (received_at, id) of the last row looked at.
pub type FindingKey = (DateTime<Utc>, Uuid);

/// The telemetry hour upsert's merge, per engine (as the minutes' upsert).
fn hour_merge(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            " ON CONFLICT (site, gateway, bucket_start) DO UPDATE SET \
             samples = telemetry_hours.samples + excluded.samples, \
             cpu_temp_sum = telemetry_hours.cpu_temp_sum + excluded.cpu_temp_sum, \
             cpu_temp_n = telemetry_hours.cpu_temp_n + excluded.cpu_temp_n, \
             cpu_temp_max = coalesce(max(telemetry_hours.cpu_temp_max, excluded.cpu_temp_max), \
                 telemetry_hours.cpu_temp_max, excluded.cpu_temp_max), \
             gpu_temp_sum = telemetry_hours.gpu_temp_sum + excluded.gpu_temp_sum, \
             gpu_temp_n = telemetry_hours.gpu_temp_n + excluded.gpu_temp_n, \
             gpu_temp_max = coalesce(max(telemetry_hours.gpu_temp_max, excluded.gpu_temp_max), \
                 telemetry_hours.gpu_temp_max, excluded.gpu_temp_max), \
             disk_free_min = coalesce(min(telemetry_hours.disk_free_min, excluded.disk_free_min), \
                 telemetry_hours.disk_free_min, excluded.disk_free_min), \
             latency_sum = telemetry_hours.latency_sum + excluded.latency_sum, \
             latency_n = telemetry_hours.latency_n + excluded.latency_n, \
             latency_max = coalesce(max(telemetry_hours.latency_max, excluded.latency_max), \
                 telemetry_hours.latency_max, excluded.latency_max), \
             frame_drops = telemetry_hours.frame_drops + excluded.frame_drops, \
             first_ts = min(telemetry_hours.first_ts, excluded.first_ts), \
             last_ts = max(telemetry_hours.last_ts, excluded.last_ts)"
        }
        Backend::Postgres => {
            " ON CONFLICT (site, gateway, bucket_start) DO UPDATE SET \
             samples = telemetry_hours.samples + EXCLUDED.samples, \
             cpu_temp_sum = telemetry_hours.cpu_temp_sum + EXCLUDED.cpu_temp_sum, \
             cpu_temp_n = telemetry_hours.cpu_temp_n + EXCLUDED.cpu_temp_n, \
             cpu_temp_max = GREATEST(telemetry_hours.cpu_temp_max, EXCLUDED.cpu_temp_max), \
             gpu_temp_sum = telemetry_hours.gpu_temp_sum + EXCLUDED.gpu_temp_sum, \
             gpu_temp_n = telemetry_hours.gpu_temp_n + EXCLUDED.gpu_temp_n, \
             gpu_temp_max = GREATEST(telemetry_hours.gpu_temp_max, EXCLUDED.gpu_temp_max), \
             disk_free_min = LEAST(telemetry_hours.disk_free_min, EXCLUDED.disk_free_min), \
             latency_sum = telemetry_hours.latency_sum + EXCLUDED.latency_sum, \
             latency_n = telemetry_hours.latency_n + EXCLUDED.latency_n, \
             latency_max = GREATEST(telemetry_hours.latency_max, EXCLUDED.latency_max), \
             frame_drops = telemetry_hours.frame_drops + EXCLUDED.frame_drops, \
             first_ts = LEAST(telemetry_hours.first_ts, EXCLUDED.first_ts), \
             last_ts = GREATEST(telemetry_hours.last_ts, EXCLUDED.last_ts)"
        }
    }
}

/// The tables each storage kind is made of.
const USAGE_KINDS: &[(&str, &[&str])] = &[
    ("findings", &["findings"]),
    (
        "alerts",
        &[
            "alerts",
            "alert_events",
            "alert_transitions",
            "notifications",
            "escalations",
        ],
    ),
    ("telemetry", &["telemetry_minutes", "telemetry_hours"]),
    ("dead_letters", &["dead_letters"]),
    ("audit_log", &["audit_log"]),
    ("evidence_index", &["evidence"]),
];

/// Retention: removal in batches, holds, the job's lease and its runs.
pub trait RetentionStore: Backed {
    /// Takes (or renews) the lease on job `name` for `holder` until `until`: `true`
    /// when `holder` has it now (no one had it, it lapsed, or `holder` had it).
    fn take_job_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "INSERT INTO job_leases (name, holder, until) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 until = excluded.until \
                 WHERE job_leases.until < $4 OR job_leases.holder = excluded.holder",
            )
            .bind(name)
            .bind(holder)
            .bind(until)
            .bind(now);
            Ok(self.db().execute(sql).await? > 0)
        }
    }

    /// Gives the lease on job `name` back, if `holder` has it.
    fn release_job_lease(
        &self,
        name: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let sql = Sql::new("DELETE FROM job_leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder);
            self.db().execute(sql).await?;
            Ok(())
        }
    }

    /// Looks at up to `limit` findings received before `cutoff` (after `after`, oldest
    /// first) and removes those not protected, in one transaction. Returns (removed,
    /// kept, where the scan stopped: `None` when nothing was left to look at).
    fn remove_expired_findings(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<FindingKey>,
        limit: u32,
    ) -> impl Future<Output = Result<(u64, u64, Option<FindingKey>), StoreError>> + Send {
        async move {
            let mut tx = self.db().begin_write().await?;
            let mut scan = Sql::new(format!(
                "SELECT f.id, f.received_at, {FINDING_PROTECTED} AS protected \
                 FROM findings f WHERE f.received_at < "
            ));
            scan.push_bind(cutoff);
            if let Some((at, id)) = after {
                scan.push(" AND (f.received_at, f.id) > (")
                    .push_bind(at)
                    .push(", ")
                    .push_bind(id)
                    .push(")");
            }
            scan.push(" ORDER BY f.received_at, f.id LIMIT ")
                .push_bind(i64::from(limit));
            let rows = tx.fetch_all(scan).await?;
            let Some(last) = rows.last() else {
                return Ok((0, 0, None));
            };
            let last: FindingKey = (last.time("received_at")?, last.get("id")?);
            let mut doomed = Vec::new();
            let mut kept = 0;
            for row in &rows {
                if row.get::<bool>("protected")? {
                    kept += 1;
                } else {
                    doomed.push(row.get::<Uuid>("id")?);
                }
            }
            let mut removed = 0;
            for chunk in doomed.chunks(500) {
                let mut delete = Sql::new(format!(
                    "DELETE FROM findings WHERE id IN (SELECT f.id FROM findings f \
                     WHERE NOT {FINDING_PROTECTED} AND f.id IN ("
                ));
                for (i, id) in chunk.iter().enumerate() {
                    if i > 0 {
                        delete.push(", ");
                    }
                    delete.push_bind(*id);
                }
                delete.push("))");
                removed += tx.execute(delete).await?;
            }
            tx.commit().await?;
            kept += doomed.len() as u64 - removed;
            Ok((removed, kept, Some(last)))
        }
    }

    /// Removes up to `limit` resolved alerts last seen before `cutoff` that have no
    /// finding left, with their trails, transitions, notifications and escalations.
    fn remove_finished_alerts(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let mut tx = self.db().begin_write().await?;
            let ids: Vec<Uuid> = tx
                .fetch_all(
                    Sql::new(
                        "SELECT a.id FROM alerts a WHERE a.status = 'resolved' \
                         AND a.last_finding_at < $1 AND NOT EXISTS (SELECT 1 FROM findings f \
                         WHERE f.site = a.site AND f.gateway = a.gateway \
                         AND f.camera = a.camera AND f.track_id = a.track_id) LIMIT $2",
                    )
                    .bind(cutoff)
                    .bind(i64::from(limit)),
                )
                .await?
                .iter()
                .map(|r| r.get::<Uuid>("id"))
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                return Ok(0);
            }
            let in_list = |sql: &str| {
                let mut q = Sql::new(sql);
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        q.push(", ");
                    }
                    q.push_bind(*id);
                }
                q.push(")");
                q
            };
            for table in [
                "alert_events",
                "alert_transitions",
                "notifications",
                "escalations",
            ] {
                tx.execute(in_list(&format!("DELETE FROM {table} WHERE alert_id IN (")))
                    .await?;
            }
            let removed = tx
                .execute(in_list(
                    "DELETE FROM alerts WHERE status = 'resolved' AND id IN (",
                ))
                .await?;
            tx.commit().await?;
            Ok(removed)
        }
    }

    /// The start of the oldest telemetry minute before `cutoff`, if any.
    fn oldest_telemetry_minute(
        &self,
        cutoff: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send {
        async move {
            let row = self
                .db()
                .fetch_one(
                    Sql::new(
                        "SELECT min(bucket_start) AS oldest FROM telemetry_minutes \
                         WHERE bucket_start < $1",
                    )
                    .bind(cutoff),
                )
                .await?;
            row.opt_time("oldest")
        }
    }

    /// Rolls the minutes of the hour starting at `hour` (every gateway) into
    /// `telemetry_hours` (merged with what is there) and removes them, in one
    /// transaction. Returns the minutes rolled up.
    fn roll_up_telemetry_hour(
        &self,
        hour: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let backend = self.db().backend();
            let end = hour + chrono::Duration::hours(1);
            let mut tx = self.db().begin_write().await?;
            let insert = format!(
                "INSERT INTO telemetry_hours (site, gateway, bucket_start, samples, \
                 cpu_temp_sum, cpu_temp_n, cpu_temp_max, gpu_temp_sum, gpu_temp_n, \
                 gpu_temp_max, disk_free_min, latency_sum, latency_n, latency_max, \
                 frame_drops, first_ts, last_ts) \
                 SELECT site, gateway, $1, sum(samples), sum(cpu_temp_sum), sum(cpu_temp_n), \
                 max(cpu_temp_max), sum(gpu_temp_sum), sum(gpu_temp_n), max(gpu_temp_max), \
                 min(disk_free_min), sum(latency_sum), sum(latency_n), max(latency_max), \
                 sum(frame_drops), min(first_ts), max(last_ts) FROM telemetry_minutes \
                 WHERE bucket_start >= $1 AND bucket_start < $2 GROUP BY site, gateway{}",
                hour_merge(backend)
            );
            tx.execute(Sql::new(insert).bind(hour).bind(end)).await?;
            let rolled = tx
                .execute(
                    Sql::new(
                        "DELETE FROM telemetry_minutes WHERE bucket_start >= $1 \
                         AND bucket_start < $2",
                    )
                    .bind(hour)
                    .bind(end),
                )
                .await?;
            tx.commit().await?;
            Ok(rolled)
        }
    }

    /// Removes up to `limit` telemetry hours before `cutoff`.
    fn remove_expired_telemetry_hours(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "DELETE FROM telemetry_hours WHERE (site, gateway, bucket_start) IN \
                 (SELECT site, gateway, bucket_start FROM telemetry_hours \
                 WHERE bucket_start < $1 ORDER BY bucket_start LIMIT $2)",
            )
            .bind(cutoff)
            .bind(i64::from(limit));
            self.db().execute(sql).await
        }
    }

    /// Removes up to `limit` dead letters received before `cutoff`.
    fn remove_expired_dead_letters(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters \
                 WHERE received_at < $1 ORDER BY id LIMIT $2)",
            )
            .bind(cutoff)
            .bind(i64::from(limit));
            self.db().execute(sql).await
        }
    }

    /// Removes the index rows of up to `limit` evidence blobs recorded before `cutoff`
    /// that nothing refers to; returns their (sha256, size) so that the caller deletes
    /// the blobs (a row gone first and a blob left behind is harmless; a blob gone
    /// under a row is not).
    fn remove_unreferenced_evidence(
        &self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send {
        async move {
            let unreferenced = evidence_unreferenced(self.db().backend());
            let sql = Sql::new(format!(
                "DELETE FROM evidence WHERE sha256 IN (SELECT e.sha256 FROM evidence e \
                 WHERE e.created_at < $1 AND {unreferenced} LIMIT $2) \
                 RETURNING sha256, size_bytes"
            ))
            .bind(cutoff)
            .bind(i64::from(limit));
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(|r| Ok((r.get("sha256")?, r.count("size_bytes")?)))
                .collect()
        }
    }

    /// Places a hold.
    fn add_retention_hold(
        &self,
        hold: &NewRetentionHold,
    ) -> impl Future<Output = Result<RetentionHold, StoreError>> + Send {
        async move {
            let id = Uuid::now_v7();
            let sql = Sql::new(
                "INSERT INTO retention_holds (id, kind, site, asset, from_at, until_at, \
                 reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(id)
            .bind(hold.kind.as_str())
            .bind(hold.site.clone())
            .bind(hold.asset.clone())
            .bind(hold.from)
            .bind(hold.until)
            .bind(text_without_nul(&hold.reason))
            .bind(text_without_nul(&hold.created_by))
            .bind(rows::to_micros(hold.created_at));
            self.db().execute(sql).await?;
            Ok(RetentionHold {
                id,
                hold: NewRetentionHold {
                    created_at: rows::to_micros(hold.created_at),
                    ..hold.clone()
                },
                released: None,
            })
        }
    }

    /// Releases a hold; `false` when there is no such hold or it was released.
    fn release_retention_hold(
        &self,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "UPDATE retention_holds SET released_by = $1, released_at = $2 \
                 WHERE id = $3 AND released_at IS NULL",
            )
            .bind(by)
            .bind(rows::to_micros(at))
            .bind(id);
            Ok(self.db().execute(sql).await? > 0)
        }
    }

    /// Every hold, newest first (released ones too).
    fn retention_holds(
        &self,
    ) -> impl Future<Output = Result<Vec<RetentionHold>, StoreError>> + Send {
        async move {
            self.db()
                .fetch_all(Sql::new(
                    "SELECT * FROM retention_holds ORDER BY created_at DESC, id DESC",
                ))
                .await?
                .iter()
                .map(hold_from_row)
                .collect()
        }
    }

    /// Rows and bytes per kind of data (tables with their indexes; evidence blobs by
    /// their recorded sizes). On SQLite this reads every page (`dbstat`): it runs with
    /// the retention job, not per request.
    fn storage_usage(&self) -> impl Future<Output = Result<Vec<StorageUsage>, StoreError>> + Send {
        async move {
            let db = self.db();
            let mut usage = Vec::new();
            for (kind, tables) in USAGE_KINDS {
                let (mut rows, mut bytes) = (0, 0);
                for table in *tables {
                    rows += db.count_rows(table).await?;
                    bytes += table_bytes(db, table).await?;
                }
                usage.push(StorageUsage {
                    kind: (*kind).to_string(),
                    rows,
                    bytes,
                });
            }
            let blobs = db
                .fetch_one(Sql::new(
                    "SELECT count(*) AS n, CAST(coalesce(sum(size_bytes), 0) AS BIGINT) AS bytes \
                     FROM evidence",
                ))
                .await?;
            usage.push(StorageUsage {
                kind: "evidence_blobs".into(),
                rows: blobs.count("n")?,
                bytes: blobs.count("bytes")?,
            });
            Ok(usage)
        }
    }

    /// Records a run.
    fn record_retention_run(
        &self,
        run: &RetentionRun,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let json = |v: serde_json::Value| sql::json_arg(Some(v.to_string()));
            let sql = Sql::new(
                "INSERT INTO retention_runs (started_at, finished_at, holder, removed, usage, \
                 error) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(rows::to_micros(run.started_at))
            .bind(rows::to_micros(run.finished_at))
            .bind(run.holder.as_str())
            .bind(json(serde_json::to_value(&run.removed).unwrap_or_default()))
            .bind(json(serde_json::to_value(&run.usage).unwrap_or_default()))
            .bind(run.error.as_deref().map(text_without_nul));
            self.db().execute(sql).await?;
            Ok(())
        }
    }

    /// The newest runs, newest first.
    fn retention_runs(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RetentionRun>, StoreError>> + Send {
        async move {
            let sql = Sql::new("SELECT * FROM retention_runs ORDER BY id DESC LIMIT $1")
                .bind(i64::from(limit.clamp(1, MAX_PAGE_LIMIT)));
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(|row| {
                    Ok(RetentionRun {
                        started_at: row.time("started_at")?,
                        finished_at: row.time("finished_at")?,
                        holder: row.get("holder")?,
                        removed: row.json("removed", "retention run")?,
                        usage: row.json("usage", "retention run")?,
                        error: row.get("error")?,
                    })
                })
                .collect()
        }
    }
}

impl<T: Backed> RetentionStore for T {}

/// A table's bytes with its indexes.
async fn table_bytes(db: Db<'_>, table: &str) -> Result<u64, StoreError> {
    let sql = match db.backend() {
        Backend::Sqlite => Sql::new(
            "SELECT coalesce(sum(pgsize), 0) AS bytes FROM dbstat WHERE name = $1 \
             OR name IN (SELECT name FROM sqlite_master WHERE type = 'index' \
             AND tbl_name = $1)",
        )
        .bind(table),
        Backend::Postgres => {
            Sql::new("SELECT coalesce(pg_total_relation_size(to_regclass($1)), 0) AS bytes")
                .bind(table)
        }
    };
    db.fetch_one(sql).await?.count("bytes")
}

fn hold_from_row(row: &Row) -> Result<RetentionHold, StoreError> {
    let kind: String = row.get("kind")?;
    let released = match (
        row.get::<Option<String>>("released_by")?,
        row.opt_time("released_at")?,
    ) {
        (Some(by), Some(at)) => Some((by, at)),
        _ => None,
    };
    Ok(RetentionHold {
        id: row.get("id")?,
        hold: NewRetentionHold {
            kind: kind
                .parse()
                .map_err(|e: String| StoreError::corrupt("hold kind", e))?,
            site: row.get("site")?,
            asset: row.get("asset")?,
            from: row.opt_time("from_at")?,
            until: row.opt_time("until_at")?,
            reason: row.get("reason")?,
            created_by: row.get("created_by")?,
            created_at: row.time("created_at")?,
        },
        released,
    })
}
