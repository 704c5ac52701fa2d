//! Notifications (issue #18): telling people of alerts, and escalating until someone
//! acts.
//!
//! ```text
//! ingest / operator action ──same tx──▶ alert_transitions ──route (rules)──▶ notifications ──claim (lease)──▶ send
//!                                              │                                  ▲                              │
//!                                              └─▶ escalations ──due step─────────┘         sent | retry (backoff) | failed | channel off
//! ```
//!
//! The store keeps the outbox and its invariants (`store/notifications.rs`); this
//! module owns the configuration (`config`), the rules (`policy`), the channels' wire
//! formats and delivery (`channels`), the Standard Webhooks signer (`signature`), and
//! the [`Notifier`] loop that routes, escalates and sends. Any number of hub replicas
//! may run it: claims are leases taken with `SKIP LOCKED`.

pub mod channels;
pub mod config;
pub mod policy;
pub mod settings;
pub mod signature;

use crate::store::{ClaimedNotification, DeliveryOutcome, NotificationStore, StoreError};
use channels::Attempt;
use chrono::{DateTime, Utc};
use config::{ChannelConfig, ChannelKind, NotificationsConfig};
use policy::Policy;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Counters and gauges for `/metrics`.
#[derive(Debug, Default)]
pub struct NotifyMetrics {
    /// Messages delivered.
    pub sent: AtomicU64,
    /// Attempts that will be retried.
    pub retried: AtomicU64,
    /// Messages given up or refused for good.
    pub failed: AtomicU64,
    /// Messages waiting (last count).
    pub queued: AtomicU64,
    /// Age of the oldest waiting message, seconds (last count).
    pub oldest_pending_age_s: AtomicU64,
}

/// Why the notifier cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The SMTP relay's settings cannot be used.
    #[error("notifications.smtp: {0}")]
    Smtp(String),
    /// A test message could not be sent.
    #[error("test message not delivered: {0}")]
    Test(String),
}

/// Routes transitions, runs escalations and sends messages, until shut down.
pub struct Notifier<S> {
    store: Arc<S>,
    // The file's [notifications]; the policy is it plus the admins' settings, reloaded
    // when their version changes.
    file: NotificationsConfig,
    dashboard_url: Option<String>,
    policy: std::sync::RwLock<Arc<Policy>>,
    settings_version: std::sync::atomic::AtomicI64,
    smtp: Option<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
    http: ureq::Agent,
    metrics: Arc<NotifyMetrics>,
    wake: Arc<tokio::sync::Notify>,
}

/// Messages one claim takes (and sends at once, concurrently).
const CLAIM_BATCH: u32 = 256;
/// Transitions and escalation steps one pass takes.
const ROUTE_BATCH: u32 = 200;

impl<S: NotificationStore + 'static> Notifier<S> {
    /// A notifier for a validated configuration; links point under `dashboard_url`;
    /// `wake` makes it look for work at once (after a commit that changed alerts)
    /// instead of at its next poll.
    pub fn new(
        store: Arc<S>,
        config: NotificationsConfig,
        dashboard_url: Option<String>,
        metrics: Arc<NotifyMetrics>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Result<Self, NotifyError> {
        let timeout = Duration::from_secs(config.send_timeout_s);
        let smtp = config
            .smtp
            .as_ref()
            .map(|smtp| channels::smtp_transport(smtp, timeout))
            .transpose()
            .map_err(NotifyError::Smtp)?;
        let dashboard_url = config.dashboard_url.clone().or(dashboard_url);
        Ok(Self {
            store,
            policy: std::sync::RwLock::new(Arc::new(Policy::new(
                config.clone(),
                dashboard_url.clone(),
            ))),
            file: config,
            dashboard_url,
            // Never a stored version: the first pass loads the settings.
            settings_version: std::sync::atomic::AtomicI64::new(-1),
            smtp,
            http: channels::http_agent(timeout),
            metrics,
            wake,
        })
    }

    /// Runs until `shutdown` turns true. A store error is logged and retried at the
    /// next poll: nothing is lost, the rows wait.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.file.poll_interval_ms);
        let mut last_depth = None::<std::time::Instant>;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let busy = match self.pass(Utc::now()).await {
                Ok(busy) => busy,
                Err(e) => {
                    tracing::warn!(error = %e, "notifications: store unavailable, retrying");
                    false
                }
            };
            if last_depth.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                self.count_depth().await;
                last_depth = Some(std::time::Instant::now());
            }
            if busy {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One pass: route, escalate, send what is due. True when there was work (look
    /// again at once).
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.reload().await?;
        let policy = self.policy();
        let routed = self
            .store
            .route_transitions(&*policy, now, ROUTE_BATCH)
            .await?;
        let stepped = self
            .store
            .run_escalations(&*policy, now, ROUTE_BATCH)
            .await?;
        let lease = now + chrono::Duration::seconds(self.file.claim_lease_s as i64);
        let claimed = self
            .store
            .claim_notifications(now, lease, CLAIM_BATCH)
            .await?;
        let sent = claimed.len();
        // Channels are sent to concurrently; one channel's messages in the order they
        // were queued, so a receiver never hears "level 3" before "level 2".
        let mut by_channel: std::collections::BTreeMap<String, Vec<ClaimedNotification>> =
            std::collections::BTreeMap::new();
        for n in claimed {
            by_channel.entry(n.channel.clone()).or_default().push(n);
        }
        let channels = by_channel.into_iter().map(|(channel, queue)| async move {
            self.deliver_channel(&channel, queue, now).await
        });
        for result in futures_util::future::join_all(channels).await {
            result?;
        }
        Ok(routed == ROUTE_BATCH as usize || stepped > 0 || sent == CLAIM_BATCH as usize)
    }

    /// The rules and channels in force.
    fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes the admins' settings when their version changed since the last look (a
    /// query of one row per pass). Settings that no longer fit the file (an id the file
    /// now defines too) are logged, and the file's configuration runs alone.
    async fn reload(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let version = self.store.notification_settings_version().await?;
        if version == self.settings_version.load(SeqCst) {
            return Ok(());
        }
        let stored = self.store.notification_settings().await?;
        let (config, problems) = settings::effective(&self.file, stored.as_ref());
        for p in &problems {
            tracing::error!(problem = %p, version, "notification settings do not fit the hub's file; running the file's channels and rules alone");
        }
        let policy = Arc::new(Policy::new(config, self.dashboard_url.clone()));
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = policy;
        self.settings_version.store(version, SeqCst);
        tracing::info!(version, "notification settings loaded");
        Ok(())
    }

    /// One channel's claimed messages, in order. A rate-limited channel sends up to a
    /// second's worth of its rate (or one digest of all of them, where it digests) and
    /// is paced; the rest go back to the queue.
    async fn deliver_channel(
        &self,
        id: &str,
        mut queue: Vec<ClaimedNotification>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let policy = self.policy();
        let channel = policy.config().channels.iter().find(|c| c.id == id);
        let Some((channel, rate)) = channel.and_then(|c| Some((c, c.rate_per_minute()?))) else {
            // A slow receiver must not hold claimed messages past their lease (another
            // sender would take them too): past half the lease, the rest go back.
            let started = std::time::Instant::now();
            let budget = Duration::from_secs(self.file.claim_lease_s) / 2;
            for n in queue {
                if started.elapsed() < budget {
                    self.deliver(n).await?;
                } else {
                    self.store
                        .finish_notification(n.id, &DeliveryOutcome::Deferred, now)
                        .await?;
                }
            }
            return Ok(());
        };
        // A second's worth of the rate goes out one by one; more than that waiting
        // becomes one digest where the channel digests, else waits its turn.
        let allowance = (rate / 60).max(1) as usize;
        let sent = if queue.len() > allowance && channel.digests() {
            self.deliver_digest(channel, queue).await?;
            1
        } else {
            let rest = queue.split_off(allowance.min(queue.len()));
            let sent = queue.len();
            for n in queue {
                self.deliver(n).await?;
            }
            for n in rest {
                self.store
                    .finish_notification(n.id, &DeliveryOutcome::Deferred, now)
                    .await?;
            }
            sent
        };
        let interval = chrono::Duration::milliseconds(60_000 / i64::from(rate.max(1)));
        self.store
            .pace_channel(id, now + interval * sent as i32)
            .await
    }

    /// Several messages as one: sent once (its id the first message's), and every
    /// message it stands for takes its outcome.
    async fn deliver_digest(
        &self,
        channel: &ChannelConfig,
        group: Vec<ClaimedNotification>,
    ) -> Result<(), StoreError> {
        let messages: Vec<&serde_json::Value> = group.iter().map(|n| &n.message).collect();
        let digest = ClaimedNotification {
            id: group[0].id,
            alert_id: group[0].alert_id,
            channel: channel.id.clone(),
            step: 0,
            message: self.policy().digest(&messages, Utc::now()),
            attempts: group.iter().map(|n| n.attempts).max().unwrap_or(1),
            created_at: group
                .iter()
                .map(|n| n.created_at)
                .min()
                .unwrap_or_else(Utc::now),
        };
        let attempt = self.attempt(channel, &digest).await;
        let now = Utc::now();
        let outcome = self.outcome(&digest, attempt, now);
        self.record(&digest, &outcome, group.len());
        for n in &group {
            self.store.finish_notification(n.id, &outcome, now).await?;
        }
        Ok(())
    }

    async fn deliver(&self, n: ClaimedNotification) -> Result<(), StoreError> {
        let policy = self.policy();
        let channel = policy
            .config()
            .channels
            .iter()
            .find(|c| c.id == n.channel)
            .cloned();
        let attempt = match channel {
            None => Attempt::Permanent {
                status: None,
                error: format!("channel {} is no longer configured", n.channel),
            },
            Some(channel) => self.attempt(&channel, &n).await,
        };
        let now = Utc::now();
        let outcome = self.outcome(&n, attempt, now);
        self.record(&n, &outcome, 1);
        self.store.finish_notification(n.id, &outcome, now).await
    }

    /// Counts and logs an outcome (of `messages` messages: more than one for a digest).
    fn record(&self, n: &ClaimedNotification, outcome: &DeliveryOutcome, messages: usize) {
        let count = messages as u64;
        match outcome {
            DeliveryOutcome::Sent { status } => {
                self.metrics.sent.fetch_add(count, Relaxed);
                tracing::info!(notification = %n.id, alert = %n.alert_id, channel = %n.channel,
                    step = n.step, attempts = n.attempts, messages, ?status, "notification sent");
            }
            DeliveryOutcome::Retry { at, error, .. } => {
                self.metrics.retried.fetch_add(count, Relaxed);
                tracing::warn!(notification = %n.id, channel = %n.channel, attempts = n.attempts,
                    messages, retry_at = %at, %error, "notification not delivered, will retry");
            }
            DeliveryOutcome::Failed { error, .. } => {
                self.metrics.failed.fetch_add(count, Relaxed);
                tracing::error!(notification = %n.id, channel = %n.channel, attempts = n.attempts,
                    messages, %error, "notification failed for good");
            }
            DeliveryOutcome::DisableChannel { error, .. } => {
                self.metrics.failed.fetch_add(count, Relaxed);
                tracing::error!(channel = %n.channel, %error,
                    "notification channel disabled: its endpoint is gone (re-enable it once fixed)");
            }
            DeliveryOutcome::Deferred => {}
        }
    }

    async fn attempt(&self, channel: &ChannelConfig, n: &ClaimedNotification) -> Attempt {
        let timeout = Duration::from_secs(self.file.send_timeout_s);
        match channel.kind {
            ChannelKind::Email => {
                let (Some(smtp), Some(transport)) = (&self.file.smtp, &self.smtp) else {
                    return Attempt::Permanent {
                        status: None,
                        error: "no [notifications.smtp] relay".into(),
                    };
                };
                match channels::render_email(smtp, channel, n) {
                    Ok(email) => channels::send_email(transport, email, timeout).await,
                    Err(error) => Attempt::Permanent {
                        status: None,
                        error,
                    },
                }
            }
            _ => {
                let request = channels::render_http(channel, n, Utc::now().timestamp());
                let agent = self.http.clone();
                tokio::task::spawn_blocking(move || channels::send_http(&agent, &request))
                    .await
                    .unwrap_or_else(|e| Attempt::Transient {
                        status: None,
                        error: format!("the sending task failed: {e}"),
                        retry_after: None,
                    })
            }
        }
    }

    /// What an attempt means for the row: retries back off exponentially with full
    /// jitter (at least a second), honour `Retry-After`, and stop after
    /// `give_up_after_s`.
    fn outcome(
        &self,
        n: &ClaimedNotification,
        attempt: Attempt,
        now: DateTime<Utc>,
    ) -> DeliveryOutcome {
        let config = &self.file;
        match attempt {
            Attempt::Delivered(status) => DeliveryOutcome::Sent {
                status: Some(status),
            },
            Attempt::Permanent { status, error } => DeliveryOutcome::Failed { status, error },
            Attempt::Gone(error) => DeliveryOutcome::DisableChannel {
                status: Some(410),
                error,
            },
            Attempt::Transient {
                status,
                error,
                retry_after,
            } => {
                let age = now - n.created_at;
                if age >= chrono::Duration::seconds(config.give_up_after_s as i64) {
                    return DeliveryOutcome::Failed {
                        status,
                        error: format!(
                            "gave up after {} attempts over {} s: {error}",
                            n.attempts,
                            age.num_seconds()
                        ),
                    };
                }
                let wait = retry_after
                    .unwrap_or_else(|| {
                        backoff(n.attempts, Duration::from_secs(config.max_backoff_s))
                    })
                    .max(Duration::from_secs(1));
                DeliveryOutcome::Retry {
                    at: now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
                    status,
                    error,
                }
            }
        }
    }

    async fn count_depth(&self) {
        if let Ok(depth) = self.store.outbox_depth().await {
            let pending = depth.by_status.get("pending").copied().unwrap_or(0);
            self.metrics.queued.store(pending, Relaxed);
            let age = depth
                .oldest_pending
                .map(|t| (Utc::now() - t).num_seconds().max(0) as u64)
                .unwrap_or(0);
            self.metrics.oldest_pending_age_s.store(age, Relaxed);
        }
    }
}

/// Sends a test message to `channel_id` at once (not through the outbox) and returns
/// the receiver's answer; PagerDuty gets a trigger and its resolve, under a dedup key of
/// its own, so no real incident is touched.
pub async fn send_test(
    config: &NotificationsConfig,
    channel_id: &str,
    dashboard_url: Option<String>,
) -> Result<String, NotifyError> {
    let channel = config
        .channels
        .iter()
        .find(|c| c.id == channel_id)
        .ok_or_else(|| NotifyError::Test(format!("no channel has the id {channel_id:?}")))?;
    let id = uuid::Uuid::now_v7();
    let at = Utc::now();
    let test = |kind: &str| ClaimedNotification {
        id: uuid::Uuid::now_v7(),
        alert_id: id,
        channel: channel.id.clone(),
        step: 0,
        message: serde_json::json!({
            "event": "test",
            "summary": format!("Chitti test message to {}: if you read this, the channel works", channel.id),
            "severity": "test",
            "rule": "test",
            "transition": {"kind": kind, "level": 0, "step": 0, "actor": "chitti-hub notify test", "at": at},
            "alert": {"id": format!("chitti-test-{id}"), "kind": "test", "site": "-", "gateway": "-",
                      "camera": "-", "status": "open", "worst_level": 0, "worst_max_c": 0.0,
                      "finding_count": 0},
            "links": dashboard_url.as_ref().map(|base| serde_json::json!({"alert": base})),
        }),
        attempts: 1,
        created_at: at,
    };
    let timeout = Duration::from_secs(config.send_timeout_s);
    let mut answers = Vec::new();
    let kinds: &[&str] = if channel.kind == ChannelKind::Pagerduty {
        &["raised", "resolved"]
    } else {
        &["raised"]
    };
    for kind in kinds {
        let n = test(kind);
        let attempt = if channel.kind == ChannelKind::Email {
            let smtp = config
                .smtp
                .as_ref()
                .ok_or_else(|| NotifyError::Smtp("missing".into()))?;
            let transport = channels::smtp_transport(smtp, timeout).map_err(NotifyError::Smtp)?;
            let email = channels::render_email(smtp, channel, &n).map_err(NotifyError::Test)?;
            channels::send_email(&transport, email, timeout).await
        } else {
            let request = channels::render_http(channel, &n, at.timestamp());
            let agent = channels::http_agent(timeout);
            tokio::task::spawn_blocking(move || channels::send_http(&agent, &request))
                .await
                .map_err(|e| NotifyError::Test(e.to_string()))?
        };
        match attempt {
            Attempt::Delivered(status) => answers.push(format!("delivered ({status})")),
            Attempt::Transient { error, .. } | Attempt::Permanent { error, .. } => {
                return Err(NotifyError::Test(error))
            }
            Attempt::Gone(error) => return Err(NotifyError::Test(format!("gone: {error}"))),
        }
    }
    Ok(answers.join(", "))
}

/// Full jitter: a uniform wait in [0, min(cap, 2 s × 2^(attempt − 1))].
fn backoff(attempt: u32, cap: Duration) -> Duration {
    let ceiling = Duration::from_secs(2)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(cap);
    let mut bytes = [0u8; 8];
    let fraction = match getrandom::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    };
    ceiling.mul_f64(fraction)
}

/// Writes the notifier's metrics.
pub fn render_metrics(out: &mut chitti_common::metrics_text::MetricsWriter, m: &NotifyMetrics) {
    out.counter(
        "chitti_hub_notifications_sent_total",
        "Notifications delivered.",
        &[],
        m.sent.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_notifications_retried_total",
        "Notification attempts that will be retried.",
        &[],
        m.retried.load(Relaxed) as f64,
    );
    out.counter(
        "chitti_hub_notifications_failed_total",
        "Notifications given up or refused for good.",
        &[],
        m.failed.load(Relaxed) as f64,
    );
    out.gauge(
        "chitti_hub_notifications_queued",
        "Notifications waiting to be sent.",
        &[],
        m.queued.load(Relaxed) as f64,
    );
    out.gauge(
        "chitti_hub_notifications_oldest_pending_seconds",
        "Age of the oldest notification waiting to be sent.",
        &[],
        m.oldest_pending_age_s.load(Relaxed) as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_never_beyond() {
        let cap = Duration::from_secs(60);
        for attempt in 1..40 {
            let ceiling = Duration::from_secs(2)
                .saturating_mul(1u32 << (attempt - 1).min(20))
                .min(cap);
            for _ in 0..20 {
                assert!(backoff(attempt, cap) <= ceiling, "attempt {attempt}");
            }
        }
        let spread: std::collections::HashSet<_> =
            (0..50).map(|_| backoff(10, cap).as_millis()).collect();
        assert!(spread.len() > 40, "jittered: {spread:?}");
    }
}
