//! The retention job: keeps each kind of data as long as `[retention]` says and no
//! longer, and never removes what is still needed.
//!
//! One replica at a time runs it (a lease in the database, renewed between passes; a
//! replica that dies leaves it to lapse). A run, in order:
//! 1. findings received more than `finding_days` ago whose alert is resolved and that
//!    no hold covers (legal holds, kept reports) — scanned oldest first, a batch per
//!    transaction, the protection re-checked by the delete;
//! 2. resolved alerts with no finding left, with their trails and notifications;
//! 3. telemetry minutes older than `telemetry_minute_days` rolled up into hours, an hour
//!    per transaction; hours older than `telemetry_hour_days` removed;
//! 4. dead letters older than `dead_letter_days`;
//! 5. evidence no finding or resolution refers to, once `unreferenced_evidence_days`
//!    old: the index row first, then the blob (local or S3);
//! 6. storage per kind measured, the run recorded (`GET /api/v1/retention`, metrics)
//!    and audited (`retention.run`).
//!
//! The audit log is never removed.

pub mod config;

use crate::evidence::EvidenceStore;
use crate::store::{
    AuditEvent, AuditLog, RetentionRemoved, RetentionRun, RetentionStore, StoreError,
};
use chrono::{DateTime, Duration, Utc};
pub use config::RetentionConfig;
use std::future::Future;
use std::sync::Arc;

/// The lease's name.
pub const LEASE: &str = "retention";

/// How long a lease lasts without renewal.
const LEASE_SECONDS: i64 = 600;

/// The audit log's actor for the job.
pub const RETENTION_ACTOR: &str = "hub";

/// The retention job of one hub replica.
pub struct RetentionJob<S> {
    store: Arc<S>,
    evidence: Arc<EvidenceStore>,
    config: RetentionConfig,
    holder: String,
}

impl<S: RetentionStore + AuditLog + Send + Sync + 'static> RetentionJob<S> {
    /// A job over `store` and `evidence`, as `holder` (unique per replica).
    pub fn new(
        store: Arc<S>,
        evidence: Arc<EvidenceStore>,
        config: RetentionConfig,
        holder: String,
    ) -> Self {
        Self {
            store,
            evidence,
            config,
            holder,
        }
    }

    /// A holder name for this process: host, process id and a random part.
    pub fn holder_name() -> String {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "hub".into());
        let mut random = [0u8; 4];
        let _ = getrandom::fill(&mut random);
        format!("{host}:{}:{}", std::process::id(), hex::encode(random))
    }

    /// Runs every `interval_s` (the first run a minute after start) until `stop`.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let interval = std::time::Duration::from_secs(self.config.interval_s);
        let mut next = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep_until(next) => {}
            }
            match self.run_once(Utc::now()).await {
                Ok(Some(run)) => tracing::info!(removed = ?run.removed, "retention run"),
                Ok(None) => tracing::debug!("retention: another replica holds the lease"),
                Err(err) => tracing::error!(%err, "retention run failed"),
            }
            next = tokio::time::Instant::now() + interval;
        }
        let _ = self.store.release_job_lease(LEASE, &self.holder).await;
    }

    /// One run as of `now`, if this replica gets the lease (`None`: another has it).
    /// The run is recorded and audited whether it succeeded or failed; a failure is
    /// also returned.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<Option<RetentionRun>, StoreError> {
        if !self.renew(now).await? {
            return Ok(None);
        }
        let mut removed = RetentionRemoved::default();
        let result = self.passes(now, &mut removed).await;
        let usage = match self.store.storage_usage().await {
            Ok(usage) => usage,
            Err(err) => {
                tracing::warn!(%err, "retention: storage not measured");
                Vec::new()
            }
        };
        let run = RetentionRun {
            started_at: now,
            finished_at: Utc::now().max(now),
            holder: self.holder.clone(),
            removed,
            usage,
            error: result.as_ref().err().map(|e| e.to_string()),
        };
        self.store.record_retention_run(&run).await?;
        self.store
            .audit(&AuditEvent {
                at: run.finished_at,
                actor: RETENTION_ACTOR.into(),
                action: "retention.run".into(),
                target: "retention".into(),
                from_address: None,
                detail: serde_json::json!({
                    "removed": run.removed,
                    "error": run.error,
                    "holder": run.holder,
                }),
            })
            .await?;
        result?;
        Ok(Some(run))
    }

    async fn renew(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.store
            .take_job_lease(
                LEASE,
                &self.holder,
                now,
                now + Duration::seconds(LEASE_SECONDS),
            )
            .await
    }

    /// The passes, in order; `removed` holds what was done up to a failure.
    async fn passes(
        &self,
        now: DateTime<Utc>,
        removed: &mut RetentionRemoved,
    ) -> Result<(), StoreError> {
        let c = &self.config;
        let days = |d: u64| Duration::days(d.min(config::MAX_DAYS) as i64);
        let batch = c.batch_rows;

        let finding_cutoff = now - days(c.finding_days);
        let mut after = None;
        loop {
            let (gone, kept, last) = self
                .store
                .remove_expired_findings(finding_cutoff, after, batch)
                .await?;
            removed.findings += gone;
            removed.findings_kept += kept;
            match last {
                Some(key) => after = Some(key),
                None => break,
            }
        }
        self.lease_kept(now).await?;

        loop {
            let gone = self
                .store
                .remove_finished_alerts(finding_cutoff, batch)
                .await?;
            removed.alerts += gone;
            if gone < u64::from(batch) {
                break;
            }
        }
        self.lease_kept(now).await?;

        let minute_cutoff = hour_floor(now - days(c.telemetry_minute_days));
        while let Some(oldest) = self.store.oldest_telemetry_minute(minute_cutoff).await? {
            removed.telemetry_minutes += self
                .store
                .roll_up_telemetry_hour(hour_floor(oldest))
                .await?;
        }
        let hour_cutoff = now - days(c.telemetry_hour_days);
        loop {
            let gone = self
                .store
                .remove_expired_telemetry_hours(hour_cutoff, batch)
                .await?;
            removed.telemetry_hours += gone;
            if gone < u64::from(batch) {
                break;
            }
        }
        loop {
            let gone = self
                .store
                .remove_expired_dead_letters(now - days(c.dead_letter_days), batch)
                .await?;
            removed.dead_letters += gone;
            if gone < u64::from(batch) {
                break;
            }
        }
        self.lease_kept(now).await?;

        let evidence_cutoff = now - days(c.unreferenced_evidence_days);
        loop {
            let gone = self
                .store
                .remove_unreferenced_evidence(evidence_cutoff, batch)
                .await?;
            for (sha, size) in &gone {
                // The row is gone: a blob that cannot be deleted now is only space.
                if let Err(err) = self.evidence.delete(sha).await {
                    tracing::warn!(%err, sha, "retention: evidence blob not deleted");
                }
                removed.evidence_bytes += size;
            }
            removed.evidence += gone.len() as u64;
            if (gone.len() as u64) < u64::from(batch) {
                break;
            }
        }
        Ok(())
    }

    /// Renews the lease; a replica that lost it stops (another took over).
    async fn lease_kept(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.renew(now.max(Utc::now())).await? {
            Ok(())
        } else {
            Err(StoreError::InvalidInput {
                what: "retention lease",
                reason: "taken over by another replica mid-run",
            })
        }
    }
}

/// The start of the hour `t` is in.
fn hour_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    let us = t.timestamp_micros();
    let hour = 3_600_000_000;
    DateTime::from_timestamp_micros(us - us.rem_euclid(hour)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_start_on_the_hour() {
        let t = DateTime::parse_from_rfc3339("2026-12-07T23:59:59.999999Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(hour_floor(t).to_rfc3339(), "2026-12-07T23:00:00+00:00");
        assert_eq!(hour_floor(hour_floor(t)), hour_floor(t));
    }
}
