//! Ingest: MQTT messages in, committed rows and `/ack`s out.
//!
//! ```text
//! broker ──Inbound (bounded queue)──▶ decode ─▶ verify signature ─▶ validate ─▶ group
//!                                        │ bad: dead letter (raw payload, reason, topic)
//!                                        ▼
//!                         one transaction: findings ON CONFLICT (id) DO NOTHING + alerts
//!                                        │ committed
//!                                        ▼
//!                      /ack {ids} per message, then the message is settled with the broker
//! ```
//!
//! - **Never ack what is not committed.** A commit that fails (database down, slow,
//!   full) is retried with backoff while the queue fills and back-pressure reaches the
//!   broker; the agents keep their findings and resend. Acks go out only after the
//!   transaction committed, and name every id of the message — duplicates included,
//!   so a gateway that resent after a lost ack hears "committed" again.
//! - **Authenticity**: a `/findings` payload must be signed by the key registered for
//!   its topic's gateway ([`chitti_common::signing`]); keys are cached for
//!   [`KEY_CACHE_TTL`] (a revocation takes effect within that) and re-read at once
//!   when an unknown key appears (a gateway just enrolled).
//! - **Bad input** never stops ingest: malformed JSON, wrong envelope version, bad
//!   signature, a gateway that is not enrolled or is revoked, a finding naming another
//!   gateway, out-of-range values, an oversize payload → a dead letter with the raw
//!   payload, the reason and the topic, counted by reason. A dead-lettered `/findings`
//!   message is not acknowledged (the gateway keeps it; an operator can see why).
//!   A finding the database refuses (say, a NUL character Postgres cannot store) is
//!   dead-lettered alone and *is* acknowledged, so the gateway does not resend it
//!   forever.
//! - `/status` (retained; also the Last Will) updates the gateway's online state and
//!   health; `/telemetry` is stored per minute. Both are signed by the gateway like its
//!   batches and applied only when fresh (see [`chitti_common::signing`], replay): an
//!   unsigned, forged or replayed report is a dead letter, so no gateway (and nobody on
//!   the broker) can make the hub believe another gateway is alive. Their dead-letter
//!   reasons include `signature` and `stale`; the retained status seen again after a
//!   reconnect is only counted (`chitti_hub_status_messages_repeated_total`).
//! - **Group commit**: messages are grouped up to `ingest.commit_max_findings` findings
//!   or `ingest.commit_max_wait_ms`, whichever comes first, and committed together.

use crate::store::{DeadLetter, IngestedFinding, StatusOutcome, Store, StoreError};
use chitti_common::protocol::{
    validate_batch, Ack, AgentStatus, ConfigState, FindingBatch, ModelState, Telemetry, Topic,
    TopicKind,
};
use chitti_common::signing::{
    open_batch, open_report, sign_ack, BatchError, ReportError, ReportKind,
};
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use uuid::Uuid;

/// How long a gateway's key and revocation state are trusted before re-reading.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// A status report at most this old when it arrives, yet older than the status the hub
/// already applied, lost a race rather than being replayed: replicas take a gateway's
/// messages in parallel (a shared subscription, a JetStream work queue), so its
/// statuses (every few seconds) can arrive out of order. Such a status is counted as
/// superseded and acknowledged, not dead-lettered; an older one still is (a replay, a
/// clock gone back). Telemetry (once a minute) keeps the strict rule.
pub const REORDER_WINDOW: Duration = Duration::from_secs(120);

/// One message from the broker.
pub struct InboundMessage {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: bytes::Bytes,
    /// Called once the message is fully handled (committed or dead-lettered): an
    /// external broker then gets its PUBACK; nothing for the embedded broker.
    pub settle: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for InboundMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundMessage")
            .field("topic", &self.topic)
            .field("bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl InboundMessage {
    fn settle(self) {
        if let Some(settle) = self.settle {
            settle();
        }
    }
}

/// Why an ack was not published: the publisher's own error, kept whole (with its
/// sources) for the log line. Ingest does not branch on it: the gateway resends.
pub type AckError = Box<dyn std::error::Error + Send + Sync>;

/// Where acks are published (the embedded broker's link, or the external client).
pub trait AckPublisher: Send + Sync {
    /// Publishes `payload` on `topic` with QoS 1.
    fn publish(
        &self,
        topic: String,
        payload: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), AckError>> + Send + '_>>;
}

/// Counters of what ingest did (for `/metrics`).
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// Messages received, all kinds.
    pub messages: AtomicU64,
    /// Findings newly stored.
    pub findings_inserted: AtomicU64,
    /// Findings received again (already stored).
    pub findings_duplicate: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Findings per commit, summed (with `commits`: the mean batch size).
    pub committed_findings: AtomicU64,
    /// Commit time, summed, microseconds.
    pub commit_micros: AtomicU64,
    /// Receive → ack time, summed, microseconds, and how many acks.
    pub ack_micros: AtomicU64,
    /// Acks published.
    pub acks: AtomicU64,
    /// Failed commits (retried).
    pub store_errors: AtomicU64,
    /// Dead letters by reason class.
    pub dead_letters: std::sync::Mutex<HashMap<&'static str, u64>>,
    /// Status messages applied.
    pub statuses: AtomicU64,
    /// The status already applied, seen again (the retained copy after a reconnect).
    pub statuses_repeated: AtomicU64,
    /// Statuses that arrived after a newer one within [`REORDER_WINDOW`] (taken by
    /// another replica first): not applied, not errors.
    pub reports_superseded: AtomicU64,
    /// Telemetry samples stored.
    pub telemetry: AtomicU64,
    /// The queue in front of ingest, read for `chitti_hub_ingest_queued_messages` (the
    /// ingest-lag signal a horizontal autoscaler scales on).
    pub queue: std::sync::OnceLock<tokio::sync::mpsc::WeakSender<InboundMessage>>,
}

/// A status made at `ts` and received at `received_at` is young enough to have been
/// overtaken by a newer one rather than replayed (see [`REORDER_WINDOW`]).
fn lost_a_race(ts: DateTime<Utc>, received_at: DateTime<Utc>) -> bool {
    (received_at - ts)
        .to_std()
        .is_ok_and(|age| age <= REORDER_WINDOW)
}

impl IngestMetrics {
    /// Messages received and waiting for ingest now (0 before the queue is set).
    pub fn queued(&self) -> usize {
        self.queue
            .get()
            .and_then(|w| w.upgrade())
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    fn dead(&self, class: &'static str) {
        *self
            .dead_letters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(class)
            .or_default() += 1;
    }
}

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Accept only signed batches.
    pub require_signatures: bool,
    /// Most findings in one transaction.
    pub commit_max_findings: usize,
    /// Longest a batch waits for company before it is committed.
    pub commit_max_wait: Duration,
    /// Largest payload accepted.
    pub max_payload_bytes: usize,
}

struct CachedGateway {
    keys: Vec<VerifyingKey>,
    revoked: bool,
    fetched: Instant,
}

/// A `/findings` message accepted and waiting for its commit.
struct PendingBatch {
    message: InboundMessage,
    topic: Topic,
    /// The batch the ack answers (the agent deletes only ids of batches it sent).
    batch_id: Uuid,
    findings: Vec<IngestedFinding>,
    /// Every id of the message: what its ack names once committed.
    ids: Vec<Uuid>,
    received: Instant,
}

/// The ingest stage.
pub struct Ingest<S> {
    store: Arc<S>,
    acks: Arc<dyn AckPublisher>,
    hub_key: Arc<ed25519_dalek::SigningKey>,
    settings: IngestSettings,
    metrics: Arc<IngestMetrics>,
    keys: HashMap<(String, String), CachedGateway>,
    live: Option<Arc<crate::live::LiveEvents>>,
}

/// Why a message went to the dead letters.
struct Rejection {
    class: &'static str,
    reason: String,
}

impl Rejection {
    fn new(class: &'static str, reason: impl Into<String>) -> Self {
        Self {
            class,
            reason: reason.into(),
        }
    }
}

impl<S: Store + 'static> Ingest<S> {
    /// An ingest stage over `store`, acknowledging through `acks` with acks signed by
    /// `hub_key` (`crate::hub_key`).
    pub fn new(
        store: Arc<S>,
        acks: Arc<dyn AckPublisher>,
        hub_key: Arc<ed25519_dalek::SigningKey>,
        settings: IngestSettings,
        metrics: Arc<IngestMetrics>,
    ) -> Self {
        Self {
            store,
            acks,
            hub_key,
            settings,
            metrics,
            keys: HashMap::new(),
            live: None,
        }
    }

    /// The same stage, naming the alerts and gateways it changes to `live` (the API's
    /// event stream).
    pub fn with_live(mut self, live: Arc<crate::live::LiveEvents>) -> Self {
        self.live = Some(live);
        self
    }

    /// Runs until the inbound channel closes.
    pub async fn run(mut self, mut inbound: mpsc::Receiver<InboundMessage>) {
        while let Some(first) = inbound.recv().await {
            let mut pending = Vec::new();
            let mut count = 0usize;
            if let Some(batch) = self.accept(first).await {
                count += batch.findings.len();
                pending.push(batch);
            }
            if pending.is_empty() {
                continue;
            }
            // Group what arrives within the wait into one transaction.
            let deadline = tokio::time::Instant::now() + self.settings.commit_max_wait;
            while count < self.settings.commit_max_findings {
                match tokio::time::timeout_at(deadline, inbound.recv()).await {
                    Ok(Some(message)) => {
                        if let Some(batch) = self.accept(message).await {
                            count += batch.findings.len();
                            pending.push(batch);
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            self.commit_and_ack(pending).await;
        }
    }

    /// Handles a message; returns it when it is a valid finding batch to commit.
    async fn accept(&mut self, message: InboundMessage) -> Option<PendingBatch> {
        self.metrics.messages.fetch_add(1, Ordering::Relaxed);
        let received_at = Utc::now();
        let received = Instant::now();
        let topic = match Topic::parse(&message.topic) {
            Ok(t) => t,
            Err(e) => {
                self.dead_letter(message, received_at, Rejection::new("topic", e.to_string()))
                    .await;
                return None;
            }
        };
        if message.payload.len() > self.settings.max_payload_bytes {
            let reason = format!(
                "payload of {} bytes is larger than the {} accepted",
                message.payload.len(),
                self.settings.max_payload_bytes
            );
            self.dead_letter(message, received_at, Rejection::new("oversize", reason))
                .await;
            return None;
        }
        match topic.kind {
            TopicKind::Findings => match self.open_findings(&topic, &message.payload).await {
                Ok(batch) => {
                    let ids = batch.findings.iter().map(|f| f.id).collect();
                    let batch_id = batch.batch_id;
                    let findings = batch
                        .findings
                        .into_iter()
                        .map(|finding| IngestedFinding {
                            finding,
                            received_at,
                            batch_id: batch.batch_id,
                        })
                        .collect();
                    Some(PendingBatch {
                        message,
                        topic,
                        batch_id,
                        findings,
                        ids,
                        received,
                    })
                }
                Err(rejection) => {
                    self.dead_letter(message, received_at, rejection).await;
                    None
                }
            },
            TopicKind::Status => {
                match self
                    .open_report::<AgentStatus>(ReportKind::Status, &topic, &message.payload)
                    .await
                {
                    Ok(status) => {
                        let outcome = self
                            .with_retry("status", || {
                                self.store.update_gateway_status(
                                    &topic.site,
                                    &topic.gateway,
                                    &status,
                                    received_at,
                                )
                            })
                            .await;
                        match outcome {
                            StatusOutcome::Applied => {
                                self.metrics.statuses.fetch_add(1, Ordering::Relaxed);
                                if let Some(live) = &self.live {
                                    live.gateway_changed(&topic.site, &topic.gateway);
                                }
                                message.settle();
                            }
                            // The retained status seen again (a reconnect, a restart).
                            StatusOutcome::Stale { last } if last == status.ts => {
                                self.metrics
                                    .statuses_repeated
                                    .fetch_add(1, Ordering::Relaxed);
                                message.settle();
                            }
                            StatusOutcome::Stale { .. } if lost_a_race(status.ts, received_at) => {
                                self.metrics
                                    .reports_superseded
                                    .fetch_add(1, Ordering::Relaxed);
                                message.settle();
                            }
                            StatusOutcome::Stale { last } => {
                                let reason = format!(
                                    "status of {} is not newer than the last applied ({}) and \
                                     not the Last Will of the current session: a replay, or \
                                     the gateway's clock went back",
                                    status.ts.to_rfc3339(),
                                    last.to_rfc3339()
                                );
                                self.dead_letter(
                                    message,
                                    received_at,
                                    Rejection::new("stale", reason),
                                )
                                .await;
                            }
                            StatusOutcome::NotEnrolled => {
                                let reason = format!(
                                    "gateway {}/{} is not enrolled (chitti-hub gateway add)",
                                    topic.site, topic.gateway
                                );
                                self.dead_letter(
                                    message,
                                    received_at,
                                    Rejection::new("unknown-gateway", reason),
                                )
                                .await;
                            }
                        }
                    }
                    Err(rejection) => self.dead_letter(message, received_at, rejection).await,
                }
                None
            }
            TopicKind::Telemetry => {
                match self
                    .open_report::<Telemetry>(ReportKind::Telemetry, &topic, &message.payload)
                    .await
                {
                    Ok(t) => {
                        let stored = self
                            .with_retry("telemetry", || {
                                self.store.insert_telemetry(&topic.site, &topic.gateway, &t)
                            })
                            .await;
                        if stored {
                            // Telemetry also tells the hub the gateway is alive (and
                            // how far its clock is off): the fleet watch reads both.
                            self.with_retry("gateway liveness", || {
                                self.store.heard_from(
                                    &topic.site,
                                    &topic.gateway,
                                    t.ts,
                                    received_at,
                                )
                            })
                            .await;
                            self.metrics.telemetry.fetch_add(1, Ordering::Relaxed);
                            message.settle();
                        } else {
                            // Not relaxed like statuses: a sample comes once a minute, so
                            // replicas rarely reorder two, and an immediate replay of the
                            // newest one must stay visible.
                            let reason = format!(
                                "telemetry of {} is not newer than the gateway's newest sample: \
                                 a replay, or the gateway's clock went back",
                                t.ts.to_rfc3339()
                            );
                            self.dead_letter(message, received_at, Rejection::new("stale", reason))
                                .await;
                        }
                    }
                    Err(rejection) => self.dead_letter(message, received_at, rejection).await,
                }
                None
            }
            TopicKind::ConfigState | TopicKind::ModelState => {
                let opened = match topic.kind {
                    TopicKind::ConfigState => self
                        .open_report(ReportKind::ConfigState, &topic, &message.payload)
                        .await
                        .map(GatewayState::Config),
                    _ => self
                        .open_report(ReportKind::ModelState, &topic, &message.payload)
                        .await
                        .map(GatewayState::Model),
                };
                match opened {
                    Ok(state) => {
                        let applied = self
                            .with_retry(state.what(), || {
                                state.apply(&*self.store, &topic, received_at)
                            })
                            .await;
                        if applied {
                            state.log(&topic);
                            if let Some(live) = &self.live {
                                if matches!(state, GatewayState::Model(_)) {
                                    live.rollout_changed();
                                }
                                live.gateway_changed(&topic.site, &topic.gateway);
                            }
                        }
                        // Not newer: the retained report seen again after a reconnect
                        // or a restart, nothing to keep.
                        message.settle();
                    }
                    Err(rejection) => self.dead_letter(message, received_at, rejection).await,
                }
                None
            }
            _ => {
                // Acks and desired documents are the hub's own traffic: not ingested.
                message.settle();
                None
            }
        }
    }

    /// Retries a store call until it succeeds (the store is the only way forward).
    async fn with_retry<T, F, Fut>(&self, what: &'static str, mut call: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut wait = Duration::from_millis(100);
        loop {
            match call().await {
                Ok(v) => return v,
                Err(err) => {
                    self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%err, what, retry_in_ms = wait.as_millis() as u64, "store unavailable; not acknowledging");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn keys_for(
        &mut self,
        site: &str,
        gateway: &str,
        fresh: bool,
    ) -> Result<&CachedGateway, Rejection> {
        let key = (site.to_string(), gateway.to_string());
        let stale = self
            .keys
            .get(&key)
            .is_none_or(|c| fresh || c.fetched.elapsed() > KEY_CACHE_TTL);
        if stale {
            let record = self
                .with_retry("gateway", || self.store.gateway(site, gateway))
                .await;
            match record {
                Some(r) => {
                    let keys = VerifyingKey::from_bytes(&r.public_key)
                        .ok()
                        .into_iter()
                        .collect();
                    self.keys.insert(
                        key.clone(),
                        CachedGateway {
                            keys,
                            revoked: r.is_revoked(),
                            fetched: Instant::now(),
                        },
                    );
                }
                None => {
                    self.keys.remove(&key);
                    return Err(Rejection::new(
                        "unknown-gateway",
                        format!(
                            "gateway {site}/{gateway} is not enrolled (chitti-hub gateway add)"
                        ),
                    ));
                }
            }
        }
        Ok(&self.keys[&key])
    }

    /// Verifies a `/status` or `/telemetry` payload: signed by the gateway's registered
    /// key (plain JSON is read only with `require_signatures = false`).
    async fn open_report<T: serde::de::DeserializeOwned>(
        &mut self,
        kind: ReportKind,
        topic: &Topic,
        payload: &[u8],
    ) -> Result<T, Rejection> {
        if !self.settings.require_signatures {
            if let Ok(report) = serde_json::from_slice::<T>(payload) {
                return Ok(report);
            }
        }
        let mut fresh = false;
        loop {
            let cached = self.keys_for(&topic.site, &topic.gateway, fresh).await?;
            if cached.revoked {
                return Err(Rejection::new(
                    "revoked",
                    format!("gateway {}/{} is revoked", topic.site, topic.gateway),
                ));
            }
            match open_report::<T>(kind, topic, payload, &cached.keys) {
                Ok(report) => return Ok(report),
                // A key we do not know may be one enrolled a moment ago.
                Err(ReportError::UnknownKey { .. }) if !fresh => fresh = true,
                Err(e) => {
                    let class = match e {
                        ReportError::Envelope { .. }
                        | ReportError::Version(_)
                        | ReportError::Report { .. } => kind.name(),
                        ReportError::UnknownKey { .. } | ReportError::BadSignature { .. } => {
                            "signature"
                        }
                    };
                    return Err(Rejection::new(class, e.to_string()));
                }
            }
        }
    }

    async fn open_findings(
        &mut self,
        topic: &Topic,
        payload: &[u8],
    ) -> Result<FindingBatch, Rejection> {
        let batch = if self.settings.require_signatures {
            let opened = {
                let cached = self.keys_for(&topic.site, &topic.gateway, false).await?;
                if cached.revoked {
                    return Err(Rejection::new(
                        "revoked",
                        format!("gateway {}/{} is revoked", topic.site, topic.gateway),
                    ));
                }
                open_batch(topic, payload, &cached.keys)
            };
            let opened = match opened {
                // A key we do not know may be one enrolled a moment ago.
                Err(BatchError::UnknownKey { .. }) => {
                    let cached = self.keys_for(&topic.site, &topic.gateway, true).await?;
                    if cached.revoked {
                        return Err(Rejection::new("revoked", "gateway is revoked"));
                    }
                    open_batch(topic, payload, &cached.keys)
                }
                other => other,
            };
            opened.map_err(|e| {
                let class = match e {
                    BatchError::Envelope(_) | BatchError::Version(_) | BatchError::Batch(_) => {
                        "malformed"
                    }
                    BatchError::UnknownKey { .. } | BatchError::BadSignature(_) => "signature",
                    BatchError::WrongIdentity { .. } => "identity",
                };
                Rejection::new(class, e.to_string())
            })?
        } else {
            let batch: FindingBatch = serde_json::from_slice(payload)
                .map_err(|e| Rejection::new("malformed", format!("not a finding batch: {e}")))?;
            chitti_common::signing::check_identity(topic, &batch)
                .map_err(|e| Rejection::new("identity", e.to_string()))?;
            batch
        };
        validate_batch(&batch).map_err(|problems| {
            Rejection::new(
                "invalid",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        Ok(batch)
    }

    async fn dead_letter(
        &self,
        message: InboundMessage,
        received_at: DateTime<Utc>,
        rejection: Rejection,
    ) {
        // `?`: topics and reasons quote what a gateway sent; escaped, never raw in the log.
        tracing::warn!(topic = ?message.topic, class = rejection.class, reason = ?rejection.reason,
            bytes = message.payload.len(), "dead letter");
        self.metrics.dead(rejection.class);
        let letter = DeadLetter {
            received_at,
            topic: message.topic.clone(),
            reason: format!("{}: {}", rejection.class, rejection.reason),
            payload: message.payload.to_vec(),
        };
        self.with_retry("dead letter", || self.store.record_dead_letter(&letter))
            .await;
        message.settle();
    }

    async fn commit_and_ack(&self, mut pending: Vec<PendingBatch>) {
        let mut wait = Duration::from_millis(100);
        let mut refused: Vec<(Uuid, String)> = Vec::new();
        // The rows move out of the messages once; the acks name `ids`, kept apart.
        let mut rows: Vec<IngestedFinding> = pending
            .iter_mut()
            .flat_map(|p| std::mem::take(&mut p.findings))
            .collect();
        loop {
            let started = Instant::now();
            match self.store.insert_findings(&rows).await {
                Ok(report) => {
                    let m = &self.metrics;
                    m.commits.fetch_add(1, Ordering::Relaxed);
                    m.committed_findings
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    m.commit_micros
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    m.findings_inserted
                        .fetch_add(report.inserted.len() as u64, Ordering::Relaxed);
                    m.findings_duplicate
                        .fetch_add(report.duplicates.len() as u64, Ordering::Relaxed);
                    if let Some(live) = &self.live {
                        live.alerts_changed(report.alerts);
                    }
                    tracing::debug!(
                        messages = pending.len(),
                        inserted = report.inserted.len(),
                        duplicates = report.duplicates.len(),
                        micros = started.elapsed().as_micros() as u64,
                        "committed"
                    );
                    break;
                }
                Err(StoreError::InvalidFinding { id, reason }) => {
                    // Take the one finding out, keep it as a dead letter, ack it anyway.
                    tracing::warn!(finding = %id, reason, "finding refused by the database");
                    refused.push((id, reason.to_string()));
                    rows.retain(|f| f.finding.id != id);
                }
                Err(err) => {
                    self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%err, findings = rows.len(), retry_in_ms = wait.as_millis() as u64,
                        "commit failed; not acknowledging, retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
        for (id, reason) in &refused {
            let letter = DeadLetter {
                received_at: Utc::now(),
                topic: "(refused by the database)".into(),
                reason: format!("store: finding {id}: {reason}"),
                payload: Vec::new(),
            };
            self.metrics.dead("store");
            self.with_retry("dead letter", || self.store.record_dead_letter(&letter))
                .await;
        }
        for p in pending {
            // Every id of the message is committed now (refused ones as dead letters).
            let ids = p.ids;
            let ack_topic = Topic::new(&p.topic.site, &p.topic.gateway, TopicKind::Ack)
                .map(|t| t.to_string())
                .unwrap_or_default();
            let ack = Ack {
                batch_id: p.batch_id,
                ids,
                signed_at: Utc::now(),
            };
            // Signed by the hub: the agent deletes nothing on an ack it cannot verify.
            let payload = sign_ack(&ack_topic, &ack, &self.hub_key).expect("ack serialises");
            match self.acks.publish(ack_topic, payload).await {
                Ok(()) => {
                    self.metrics.acks.fetch_add(1, Ordering::Relaxed);
                    self.metrics
                        .ack_micros
                        .fetch_add(p.received.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                // The gateway resends; the duplicate is acked then.
                Err(err) => tracing::warn!(%err, topic = %p.topic, "ack not published"),
            }
            p.message.settle();
        }
    }
}

/// What a gateway reports retained about the hub's desired documents: kept only when
/// newer than the last kept.
enum GatewayState {
    /// `/config/state`.
    Config(ConfigState),
    /// `/model/state`.
    Model(ModelState),
}

impl GatewayState {
    fn what(&self) -> &'static str {
        match self {
            Self::Config(_) => "configuration state",
            Self::Model(_) => "model state",
        }
    }

    async fn apply<S: Store>(
        &self,
        store: &S,
        topic: &Topic,
        received_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (site, gateway) = (&topic.site, &topic.gateway);
        match self {
            Self::Config(c) => {
                store
                    .apply_config_state(site, gateway, c, received_at)
                    .await
            }
            Self::Model(m) => store.apply_model_state(site, gateway, m, received_at).await,
        }
    }

    fn log(&self, topic: &Topic) {
        let (site, gateway) = (&topic.site, &topic.gateway);
        match self {
            Self::Config(c) => tracing::info!(%site, %gateway, version = c.version,
                status = c.status.as_str(), errors = c.errors.len(), "configuration state"),
            Self::Model(m) => tracing::info!(%site, %gateway, seq = m.seq,
                phase = m.phase.as_str(), reason = m.reason.as_deref().unwrap_or(""), "model state"),
        }
    }
}
