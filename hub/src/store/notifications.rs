//! The notification outbox (issue #18): the transitions of alerts that matter to
//! people, the messages they cause, and the escalations waiting for someone to act.
//!
//! # Invariants
//!
//! - **A transition is written with its cause.** Ingest records `raised`/`level_up` in
//!   the transaction that moves the alert (`record_level_transitions`), an operator's
//!   action records `acknowledged`/`resolved`/`reopened` in the transaction that
//!   changes the status (`record_status_transition`). A finding stream makes one
//!   transition per new worst level, never one per finding (`alerts.notified_level`).
//! - **Messages are rows before they are sent.** Routing a transition inserts its
//!   messages and marks it routed in one transaction; a message's key is
//!   (transition, channel, step), so routing twice inserts nothing twice. Its `id` is the
//!   idempotency key of every attempt (webhook-id, PagerDuty's dedup is the alert id,
//!   e-mail Message-ID).
//! - **Claims are leases.** A sender claims due rows (`SKIP LOCKED` on Postgres, so
//!   replicas share the work) until `claimed_until`; a sender that dies leaves them to
//!   the next claim after the lease: at least once on the wire.
//! - **Acting stops escalation at once.** Acknowledging or resolving stops the alert's
//!   escalations and cancels their unsent messages in the action's own transaction; a
//!   sender never claims an escalation message of an alert that is no longer open; an
//!   escalation step locks its alert first, as an action does, so the two serialize.

use super::alerts::{alert_by_id, alert_from_row, ALERT_COLUMNS};
use super::sql::{json_arg, Row, Sql, Tx};
use super::*;
use std::collections::{BTreeMap, HashMap};

/// A change of an alert that people are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// A new alert.
    Raised,
    /// Its worst level rose.
    LevelUp,
    /// Someone acknowledged it.
    Acknowledged,
    /// Someone resolved it.
    Resolved,
    /// Someone reopened it.
    Reopened,
    /// Nobody acted in time: it went to the next step's channels.
    Escalated,
}

impl TransitionKind {
    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raised => "raised",
            Self::LevelUp => "level_up",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
            Self::Reopened => "reopened",
            Self::Escalated => "escalated",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "raised" => Self::Raised,
            "level_up" => Self::LevelUp,
            "acknowledged" => Self::Acknowledged,
            "resolved" => Self::Resolved,
            "reopened" => Self::Reopened,
            "escalated" => Self::Escalated,
            other => return Err(StoreError::corrupt("alert transition kind", other)),
        })
    }

    /// The transition an operator's status change is (none for comments).
    pub fn of_status_change(to: AlertStatus) -> Self {
        match to {
            AlertStatus::Open => Self::Reopened,
            AlertStatus::Acknowledged => Self::Acknowledged,
            AlertStatus::Resolved => Self::Resolved,
        }
    }
}

/// One transition of an alert.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AlertTransition {
    /// Order of recording.
    pub id: i64,
    /// The alert.
    pub alert_id: Uuid,
    /// What happened.
    pub kind: TransitionKind,
    /// The alert's worst level then.
    pub level: u8,
    /// Escalation step (1 = the first escalation), 0 otherwise.
    pub step: u32,
    /// Who: `site/gateway` for ingest, a user name, `escalation:<rule>`.
    pub actor: String,
    /// When (hub clock).
    pub at: DateTime<Utc>,
}

/// A message the policy wants sent.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedNotification {
    /// The channel id.
    pub channel: String,
    /// The rule that chose it.
    pub rule: String,
    /// What to say, rendered per channel at send time.
    pub message: serde_json::Value,
    /// Set: record it as failed at once, for this reason (a disabled channel).
    pub refused: Option<String>,
    /// Set: not sent before this (the channel's quiet hours).
    pub not_before: Option<DateTime<Utc>>,
}

/// An escalation a transition starts (or restarts, when the last one stopped).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEscalation {
    /// The rule whose escalation this is.
    pub rule: String,
    /// When its first step is due.
    pub due_at: DateTime<Utc>,
}

/// What routing one transition does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutePlan {
    /// Messages to queue.
    pub notifications: Vec<PlannedNotification>,
    /// Escalations to start.
    pub escalations: Vec<PlannedEscalation>,
}

/// What one due escalation step does.
#[derive(Debug, Clone, PartialEq)]
pub enum EscalationStep {
    /// Send these, then wait for the next step (none: this was the last).
    Send {
        /// The messages.
        notifications: Vec<PlannedNotification>,
        /// When the next step is due.
        next_due: Option<DateTime<Utc>>,
    },
    /// Stop, for this reason (the rule is gone from the configuration).
    Stop(String),
}

/// The rules, applied by the store inside its transactions (`notify::Policy`).
pub trait NotificationPolicy: Sync {
    /// The messages and escalations of one transition. `notified` has the channels
    /// this alert already had messages queued for, with when the last of them was
    /// delivered (if one was); `disabled`, the channels that are off.
    ///
    /// `gateway_sent` has the messages delivered in the last day about the gateway's
    /// other alerts (channel, when, the transition's level), newest first, when
    /// [`NotificationPolicy::wants_gateway_history`] says they matter.
    fn route(
        &self,
        transition: &AlertTransition,
        alert: &AlertRecord,
        notified: &HashMap<String, Option<DateTime<Utc>>>,
        disabled: &HashSet<String>,
        gateway_sent: &[GatewaySent],
    ) -> RoutePlan;

    /// Whether [`NotificationPolicy::route`] reads `gateway_sent` (a rule has a
    /// per-gateway cool-down); the store skips the query otherwise.
    fn wants_gateway_history(&self) -> bool {
        false
    }

    /// Step `transition.step` of `rule`'s escalation of an open alert.
    fn escalate(
        &self,
        rule: &str,
        transition: &AlertTransition,
        alert: &AlertRecord,
        disabled: &HashSet<String>,
    ) -> EscalationStep;
}

/// A message delivered about one of a gateway's alerts (for per-gateway cool-downs).
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySent {
    /// The channel.
    pub channel: String,
    /// When it was delivered.
    pub at: DateTime<Utc>,
    /// The level of the transition it told of.
    pub level: u8,
}

/// Messages about a gateway's other alerts [`GatewaySent`] reads at most.
const GATEWAY_HISTORY: i64 = 500;

/// A message a sender has claimed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedNotification {
    /// Its id: the idempotency key of every attempt.
    pub id: Uuid,
    /// The alert.
    pub alert_id: Uuid,
    /// The channel id.
    pub channel: String,
    /// Escalation step (0: not an escalation).
    pub step: u32,
    /// What to say.
    pub message: serde_json::Value,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// The receiver took it.
    Sent {
        /// Its answer (HTTP status, SMTP reply code).
        status: Option<i32>,
    },
    /// Try again at `at`.
    Retry {
        /// When.
        at: DateTime<Utc>,
        /// The receiver's answer, if any.
        status: Option<i32>,
        /// What went wrong.
        error: String,
    },
    /// Never: the receiver refused it for good.
    Failed {
        /// The receiver's answer, if any.
        status: Option<i32>,
        /// Why.
        error: String,
    },
    /// Not attempted: its channel is paced (rate limit); back to the queue, the claim
    /// not counted as an attempt.
    Deferred,
    /// Never, and the channel is off from now on (a webhook answered 410 Gone).
    DisableChannel {
        /// The receiver's answer.
        status: Option<i32>,
        /// Why.
        error: String,
    },
}

/// The state of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// Delivered.
    Sent,
    /// Given up, or refused for good.
    Failed,
    /// Not sent: its escalation was stopped.
    Cancelled,
}

impl NotificationStatus {
    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "pending" => Self::Pending,
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => return Err(StoreError::corrupt("notification status", other)),
        })
    }
}

/// One message and what became of it: a line of an alert's delivery log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct NotificationRecord {
    /// Its id (the idempotency key the receiver saw).
    pub id: Uuid,
    /// The alert.
    pub alert_id: Uuid,
    /// The transition that caused it.
    pub transition: TransitionKind,
    /// The channel id.
    pub channel: String,
    /// The rule that chose the channel.
    pub rule: String,
    /// Escalation step (0: not an escalation).
    pub step: u32,
    /// Its state.
    pub status: NotificationStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Queued at.
    pub created_at: DateTime<Utc>,
    /// Next attempt, while pending.
    pub next_attempt_at: DateTime<Utc>,
    /// Delivered at.
    pub sent_at: Option<DateTime<Utc>>,
    /// The receiver's last answer (HTTP status or SMTP code).
    pub last_status: Option<i32>,
    /// The last error.
    pub last_error: Option<String>,
}

/// How much is queued, for metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxDepth {
    /// Messages by status.
    pub by_status: BTreeMap<String, u64>,
    /// When the oldest pending message was queued.
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// Ids per statement when a list of alerts is bound (far below both engines' limits).
const IDS_PER_STATEMENT: usize = 500;

/// The outbox and its escalations.
pub trait NotificationStore: Backed {
    /// Applies the policy to up to `limit` unrouted transitions, oldest first, each in
    /// its own transaction with the messages it causes. Returns how many were routed.
    fn route_transitions(
        &self,
        policy: &impl NotificationPolicy,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        async move {
            let db = self.db();
            let due = db
                .fetch_all(
                    Sql::new(
                        "SELECT id FROM alert_transitions WHERE routed_at IS NULL \
                         ORDER BY id LIMIT $1",
                    )
                    .bind(i64::from(limit)),
                )
                .await?;
            let mut routed = 0;
            for row in due {
                let id: i64 = row.get("id")?;
                let mut tx = db.begin_write().await?;
                let skip = tx.backend().skip_locked();
                let Some(row) = tx
                    .fetch_optional(
                        Sql::new(format!(
                            "SELECT {TRANSITION_COLUMNS} FROM alert_transitions \
                             WHERE id = $1 AND routed_at IS NULL{skip}"
                        ))
                        .bind(id),
                    )
                    .await?
                else {
                    // Routed meanwhile by another replica, or being routed now.
                    continue;
                };
                let transition = transition_from_row(&row)?;
                let alert = tx
                    .fetch_optional(alert_by_id(transition.alert_id))
                    .await?
                    .ok_or(StoreError::AlertNotFound(transition.alert_id))?;
                let alert = alert_from_row(&alert)?;
                let notified = tx
                    .fetch_all(
                        Sql::new(
                            "SELECT channel, max(sent_at) AS last FROM notifications \
                             WHERE alert_id = $1 AND status <> 'cancelled' GROUP BY channel",
                        )
                        .bind(alert.id),
                    )
                    .await?
                    .iter()
                    .map(|r| Ok((r.get::<String>("channel")?, r.opt_time("last")?)))
                    .collect::<Result<HashMap<_, _>, StoreError>>()?;
                let disabled = disabled_channels(&mut tx).await?;
                let gateway_sent = if policy.wants_gateway_history() {
                    gateway_history(&mut tx, &alert, now).await?
                } else {
                    Vec::new()
                };
                let plan = policy.route(&transition, &alert, &notified, &disabled, &gateway_sent);
                insert_notifications(&mut tx, &transition, &plan.notifications, now).await?;
                if alert.status == AlertStatus::Open {
                    for e in &plan.escalations {
                        tx.execute(
                            Sql::new(
                                "INSERT INTO escalations \
                                 (alert_id, rule, next_step, due_at, started_at) \
                                 VALUES ($1, $2, 1, $3, $4) \
                                 ON CONFLICT (alert_id, rule) DO UPDATE SET next_step = 1, \
                                 due_at = excluded.due_at, started_at = excluded.started_at, \
                                 stopped_at = NULL, stopped_by = NULL \
                                 WHERE escalations.stopped_at IS NOT NULL",
                            )
                            .bind(alert.id)
                            .bind(e.rule.as_str())
                            .bind(e.due_at)
                            .bind(now),
                        )
                        .await?;
                    }
                }
                tx.execute(
                    Sql::new("UPDATE alert_transitions SET routed_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(id),
                )
                .await?;
                tx.commit().await?;
                routed += 1;
            }
            Ok(routed)
        }
    }

    /// Runs up to `limit` escalation steps due at `now`, each in its own transaction
    /// that locks the alert first. Returns how many steps sent something.
    fn run_escalations(
        &self,
        policy: &impl NotificationPolicy,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        async move {
            let db = self.db();
            let due = db
                .fetch_all(
                    Sql::new(
                        "SELECT alert_id, rule FROM escalations \
                         WHERE stopped_at IS NULL AND due_at <= $1 ORDER BY due_at LIMIT $2",
                    )
                    .bind(now)
                    .bind(i64::from(limit)),
                )
                .await?;
            let mut stepped = 0;
            for row in due {
                let alert_id: Uuid = row.get("alert_id")?;
                let rule: String = row.get("rule")?;
                let mut tx = db.begin_write().await?;
                let lock = tx.backend().for_update();
                let Some(alert) = tx
                    .fetch_optional(
                        Sql::new(format!(
                            "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1{lock}"
                        ))
                        .bind(alert_id),
                    )
                    .await?
                else {
                    continue;
                };
                let alert = alert_from_row(&alert)?;
                let Some(escalation) = tx
                    .fetch_optional(
                        Sql::new(format!(
                            "SELECT next_step FROM escalations WHERE alert_id = $1 AND rule = $2 \
                             AND stopped_at IS NULL AND due_at <= $3{lock}"
                        ))
                        .bind(alert_id)
                        .bind(rule.as_str())
                        .bind(now),
                    )
                    .await?
                else {
                    // Stepped or stopped meanwhile.
                    continue;
                };
                let step = count_column(&escalation, "next_step")?;
                if alert.status != AlertStatus::Open {
                    stop_escalation(
                        &mut tx,
                        alert_id,
                        &rule,
                        now,
                        &format!("alert {}", alert.status.as_str()),
                    )
                    .await?;
                    tx.commit().await?;
                    continue;
                }
                let mut transition = AlertTransition {
                    id: 0,
                    alert_id,
                    kind: TransitionKind::Escalated,
                    level: alert.worst_level,
                    step,
                    actor: format!("escalation:{rule}"),
                    at: now,
                };
                match policy.escalate(
                    &rule,
                    &transition,
                    &alert,
                    &disabled_channels(&mut tx).await?,
                ) {
                    EscalationStep::Stop(why) => {
                        stop_escalation(&mut tx, alert_id, &rule, now, &why).await?;
                    }
                    EscalationStep::Send {
                        notifications,
                        next_due,
                    } => {
                        transition.id = insert_transition(&mut tx, &transition, Some(now)).await?;
                        insert_notifications(&mut tx, &transition, &notifications, now).await?;
                        match next_due {
                            Some(due) => {
                                tx.execute(
                                    Sql::new(
                                        "UPDATE escalations SET next_step = $1, due_at = $2 \
                                         WHERE alert_id = $3 AND rule = $4",
                                    )
                                    .bind(i32::try_from(step + 1).unwrap_or(i32::MAX))
                                    .bind(due)
                                    .bind(alert_id)
                                    .bind(rule.as_str()),
                                )
                                .await?;
                            }
                            None => {
                                stop_escalation(&mut tx, alert_id, &rule, now, "steps spent")
                                    .await?;
                            }
                        }
                        stepped += 1;
                    }
                }
                tx.commit().await?;
            }
            Ok(stepped)
        }
    }

    /// Claims up to `limit` messages due at `now` until `lease_until`: each claim
    /// counts an attempt. Escalation messages of alerts no longer open are not claimed
    /// (the action that closed the alert cancels them).
    fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ClaimedNotification>, StoreError>> + Send {
        async move {
            let db = self.db();
            let skip = db.backend().skip_locked();
            let sql = Sql::new(format!(
                "UPDATE notifications SET claimed_until = $1, attempts = attempts + 1 \
                 WHERE id IN (SELECT n.id FROM notifications n \
                   WHERE n.status = 'pending' AND n.next_attempt_at <= $2 \
                   AND (n.claimed_until IS NULL OR n.claimed_until <= $2) \
                   AND (n.step = 0 OR EXISTS (SELECT 1 FROM alerts a \
                        WHERE a.id = n.alert_id AND a.status = 'open')) \
                   AND NOT EXISTS (SELECT 1 FROM channel_pacing p \
                        WHERE p.channel = n.channel AND p.next_send_at > $2) \
                   ORDER BY n.next_attempt_at LIMIT $3{skip}) \
                 RETURNING id, alert_id, channel, step, message, attempts, created_at"
            ))
            .bind(lease_until)
            .bind(now)
            .bind(i64::from(limit));
            let mut tx = db.begin_write().await?;
            let rows = tx.fetch_all(sql).await?;
            tx.commit().await?;
            let mut claimed = rows
                .iter()
                .map(|row| {
                    Ok(ClaimedNotification {
                        id: row.get("id")?,
                        alert_id: row.get("alert_id")?,
                        channel: row.get("channel")?,
                        step: count_column(row, "step")?,
                        message: row.json("message", "notification message")?,
                        attempts: count_column(row, "attempts")?,
                        created_at: row.time("created_at")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            // Queued order: ids are UUIDv7, time-ordered.
            claimed.sort_by_key(|c| (c.created_at, c.id));
            Ok(claimed)
        }
    }

    /// Records how an attempt ended. A disabled channel fails its other pending
    /// messages in the same transaction.
    fn finish_notification(
        &self,
        id: Uuid,
        outcome: &DeliveryOutcome,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let mut tx = self.db().begin_write().await?;
            let sql = match outcome {
                DeliveryOutcome::Sent { status } => Sql::new(
                    "UPDATE notifications SET status = 'sent', sent_at = $1, last_status = $2, \
                     last_error = NULL, claimed_until = NULL WHERE id = $3",
                )
                .bind(now)
                .bind(*status)
                .bind(id),
                DeliveryOutcome::Retry { at, status, error } => Sql::new(
                    "UPDATE notifications SET next_attempt_at = $1, last_status = $2, \
                     last_error = $3, claimed_until = NULL WHERE id = $4 AND status = 'pending'",
                )
                .bind(*at)
                .bind(*status)
                .bind(text_without_nul(error))
                .bind(id),
                DeliveryOutcome::Deferred => Sql::new(
                    "UPDATE notifications SET claimed_until = NULL, attempts = attempts - 1 \
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(id),
                DeliveryOutcome::Failed { status, error }
                | DeliveryOutcome::DisableChannel { status, error } => Sql::new(
                    "UPDATE notifications SET status = 'failed', last_status = $1, \
                     last_error = $2, claimed_until = NULL WHERE id = $3",
                )
                .bind(*status)
                .bind(text_without_nul(error))
                .bind(id),
            };
            tx.execute(sql).await?;
            if let DeliveryOutcome::DisableChannel { error, .. } = outcome {
                let channel: String = tx
                    .fetch_one(Sql::new("SELECT channel FROM notifications WHERE id = $1").bind(id))
                    .await?
                    .get("channel")?;
                let newly = tx
                    .execute(
                        Sql::new(
                            "INSERT INTO disabled_channels (channel, disabled_at, reason) \
                             VALUES ($1, $2, $3) ON CONFLICT (channel) DO NOTHING",
                        )
                        .bind(channel.as_str())
                        .bind(now)
                        .bind(text_without_nul(error)),
                    )
                    .await?;
                if newly > 0 {
                    // Admins read it in the audit log and on the notifications page.
                    super::audit::append(
                        &mut tx,
                        &AuditEvent {
                            at: now,
                            actor: "system".into(),
                            action: "notification.channel_disabled".into(),
                            target: channel.clone(),
                            from_address: None,
                            detail: serde_json::json!({ "reason": error, "notification": id }),
                        },
                    )
                    .await?;
                }
                tx.execute(
                    Sql::new(
                        "UPDATE notifications SET status = 'failed', last_error = $1, \
                         claimed_until = NULL WHERE channel = $2 AND status = 'pending'",
                    )
                    .bind(format!("channel {channel} disabled: {error}"))
                    .bind(channel.as_str()),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }
    }

    /// Paces a channel: it sends nothing before `until` (its rate limit).
    fn pace_channel(
        &self,
        channel: &str,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            self.db()
                .execute(
                    Sql::new(
                        "INSERT INTO channel_pacing (channel, next_send_at) VALUES ($1, $2) \
                         ON CONFLICT (channel) DO UPDATE SET next_send_at = excluded.next_send_at",
                    )
                    .bind(channel)
                    .bind(until),
                )
                .await?;
            Ok(())
        }
    }

    /// The channels that are off, with when and why.
    fn disabled_channels(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, DateTime<Utc>, String)>, StoreError>> + Send {
        async move {
            let rows = self
                .db()
                .fetch_all(Sql::new(
                    "SELECT channel, disabled_at, reason FROM disabled_channels ORDER BY channel",
                ))
                .await?;
            rows.iter()
                .map(|r| Ok((r.get("channel")?, r.time("disabled_at")?, r.get("reason")?)))
                .collect()
        }
    }

    /// Turns a disabled channel back on. True when it was off.
    fn enable_channel(
        &self,
        channel: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let n = self
                .db()
                .execute(Sql::new("DELETE FROM disabled_channels WHERE channel = $1").bind(channel))
                .await?;
            Ok(n > 0)
        }
    }

    /// An alert's transitions, oldest first.
    fn alert_transitions(
        &self,
        alert_id: Uuid,
    ) -> impl Future<Output = Result<Vec<AlertTransition>, StoreError>> + Send {
        async move {
            let rows = self
                .db()
                .fetch_all(
                    Sql::new(format!(
                        "SELECT {TRANSITION_COLUMNS} FROM alert_transitions \
                         WHERE alert_id = $1 ORDER BY id"
                    ))
                    .bind(alert_id),
                )
                .await?;
            rows.iter().map(transition_from_row).collect()
        }
    }

    /// Messages, newest first: every one of an alert (its delivery log), or with
    /// `failures_first` the failed and retrying ones ahead of the rest.
    fn list_notifications(
        &self,
        alert_id: Option<Uuid>,
        failures_first: bool,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<NotificationRecord>, StoreError>> + Send {
        async move {
            let mut sql = Sql::new(
                "SELECT n.id, n.alert_id, t.kind, n.channel, n.rule, n.step, n.status, \
                 n.attempts, n.created_at, n.next_attempt_at, n.sent_at, n.last_status, \
                 n.last_error FROM notifications n \
                 JOIN alert_transitions t ON t.id = n.transition_id WHERE 1 = 1",
            );
            if let Some(alert) = alert_id {
                sql.push(" AND n.alert_id = ").push_bind(alert);
            }
            sql.push(if failures_first {
                " ORDER BY CASE WHEN n.status = 'failed' THEN 0 \
                 WHEN n.status = 'pending' AND n.last_error IS NOT NULL THEN 1 ELSE 2 END, \
                 n.created_at DESC, n.id DESC LIMIT "
            } else {
                " ORDER BY n.created_at DESC, n.id DESC LIMIT "
            })
            .push_bind(page_limit(limit) as i64);
            let rows = self.db().fetch_all(sql).await?;
            rows.iter()
                .map(|r| {
                    Ok(NotificationRecord {
                        id: r.get("id")?,
                        alert_id: r.get("alert_id")?,
                        transition: TransitionKind::parse(&r.get::<String>("kind")?)?,
                        channel: r.get("channel")?,
                        rule: r.get("rule")?,
                        step: count_column(r, "step")?,
                        status: NotificationStatus::parse(&r.get::<String>("status")?)?,
                        attempts: count_column(r, "attempts")?,
                        created_at: r.time("created_at")?,
                        next_attempt_at: r.time("next_attempt_at")?,
                        sent_at: r.opt_time("sent_at")?,
                        last_status: r.get("last_status")?,
                        last_error: r.get("last_error")?,
                    })
                })
                .collect()
        }
    }

    /// Messages by status and the age of the oldest pending one.
    fn outbox_depth(&self) -> impl Future<Output = Result<OutboxDepth, StoreError>> + Send {
        async move {
            let db = self.db();
            let rows = db
                .fetch_all(Sql::new(
                    "SELECT status, count(*) AS n FROM notifications GROUP BY status",
                ))
                .await?;
            let mut depth = OutboxDepth::default();
            for r in rows {
                depth.by_status.insert(r.get("status")?, r.count("n")?);
            }
            depth.oldest_pending = db
                .fetch_one(Sql::new(
                    "SELECT min(created_at) AS oldest FROM notifications WHERE status = 'pending'",
                ))
                .await?
                .opt_time("oldest")?;
            Ok(depth)
        }
    }

    /// The notification settings admins edit (channels and rules beside the file's),
    /// with their version; `None` before the first edit.
    fn notification_settings(
        &self,
    ) -> impl Future<Output = Result<Option<StoredSettings>, StoreError>> + Send {
        async move {
            let row = self
                .db()
                .fetch_optional(Sql::new(
                    "SELECT document, version, updated_by, updated_at \
                     FROM notification_settings WHERE id = 1",
                ))
                .await?;
            row.map(|row| {
                Ok(StoredSettings {
                    document: row.json("document", "notification settings")?,
                    version: row.get("version")?,
                    updated_by: row.get("updated_by")?,
                    updated_at: row.time("updated_at")?,
                })
            })
            .transpose()
        }
    }

    /// The settings' version alone (0 before the first edit): what the notifier
    /// polls to know it must reload.
    fn notification_settings_version(
        &self,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send {
        async move {
            let row = self
                .db()
                .fetch_optional(Sql::new(
                    "SELECT version FROM notification_settings WHERE id = 1",
                ))
                .await?;
            row.map_or(Ok(0), |row| row.get("version"))
        }
    }

    /// Replaces the settings document if its version is still `expected` (0: never
    /// saved), returning the new version; otherwise
    /// [`StoreError::VersionConflict`] with the current one. Concurrent saves
    /// serialize on the row (`FOR UPDATE` on Postgres, the write lock on SQLite).
    fn save_notification_settings(
        &self,
        expected: i64,
        document: &serde_json::Value,
        by: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send {
        async move {
            let mut tx = self.db().begin_write().await?;
            let lock = tx.backend().for_update();
            let current: i64 = match tx
                .fetch_optional(Sql::new(format!(
                    "SELECT version FROM notification_settings WHERE id = 1{lock}"
                )))
                .await?
            {
                Some(row) => row.get("version")?,
                None => 0,
            };
            if current != expected {
                return Err(StoreError::VersionConflict {
                    what: "notification settings",
                    current,
                });
            }
            let next = current + 1;
            tx.execute(
                Sql::new(
                    "INSERT INTO notification_settings (id, document, version, updated_by, \
                     updated_at) VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
                     document = excluded.document, version = excluded.version, \
                     updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                )
                .bind(json_arg(Some(document.to_string())))
                .bind(next)
                .bind(text_without_nul(by))
                .bind(at),
            )
            .await?;
            tx.commit().await?;
            Ok(next)
        }
    }
}

impl<T: Backed> NotificationStore for T {}

/// The notification settings document as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSettings {
    /// `{"channels": [...], "rules": [...]}`, secrets included.
    pub document: serde_json::Value,
    /// Incremented by every save (1 after the first).
    pub version: i64,
    /// Who saved it last.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

const TRANSITION_COLUMNS: &str = "id, alert_id, kind, level, step, actor, at";

fn transition_from_row(row: &Row) -> Result<AlertTransition, StoreError> {
    let level: i16 = row.get("level")?;
    Ok(AlertTransition {
        id: row.get("id")?,
        alert_id: row.get("alert_id")?,
        kind: TransitionKind::parse(&row.get::<String>("kind")?)?,
        level: u8::try_from(level).map_err(|_| StoreError::corrupt("severity level", level))?,
        step: count_column(row, "step")?,
        actor: row.get("actor")?,
        at: row.time("at")?,
    })
}

/// A small non-negative `integer` column.
fn count_column(row: &Row, column: &str) -> Result<u32, StoreError> {
    let v: i32 = row.get(column)?;
    u32::try_from(v).map_err(|_| StoreError::corrupt(column_what(column), v))
}

fn column_what(column: &str) -> &'static str {
    match column {
        "step" | "next_step" => "escalation step",
        _ => "attempt count",
    }
}

async fn stop_escalation(
    tx: &mut Tx,
    alert_id: Uuid,
    rule: &str,
    now: DateTime<Utc>,
    by: &str,
) -> Result<u64, StoreError> {
    tx.execute(
        Sql::new(
            "UPDATE escalations SET stopped_at = $1, stopped_by = $2 \
             WHERE alert_id = $3 AND rule = $4",
        )
        .bind(now)
        .bind(text_without_nul(by))
        .bind(alert_id)
        .bind(rule),
    )
    .await
}

async fn disabled_channels(tx: &mut Tx) -> Result<HashSet<String>, StoreError> {
    tx.fetch_all(Sql::new("SELECT channel FROM disabled_channels"))
        .await?
        .iter()
        .map(|r| r.get::<String>("channel"))
        .collect()
}

async fn insert_transition(
    tx: &mut Tx,
    t: &AlertTransition,
    routed_at: Option<DateTime<Utc>>,
) -> Result<i64, StoreError> {
    tx.fetch_one(
        Sql::new(
            "INSERT INTO alert_transitions (alert_id, kind, level, step, actor, at, routed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(t.alert_id)
        .bind(t.kind.as_str())
        .bind(i16::from(t.level))
        .bind(i32::try_from(t.step).unwrap_or(i32::MAX))
        .bind(text_without_nul(&t.actor))
        .bind(t.at)
        .bind(routed_at),
    )
    .await?
    .get("id")
}

async fn insert_notifications(
    tx: &mut Tx,
    t: &AlertTransition,
    planned: &[PlannedNotification],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for n in planned {
        if t.kind == TransitionKind::LevelUp {
            // A later level supersedes an earlier one still waiting (held by quiet hours
            // or a cool-down, never attempted): the receiver hears the latest level.
            tx.execute(
                Sql::new(
                    "UPDATE notifications SET status = 'cancelled', last_error = $1 \
                     WHERE alert_id = $2 AND channel = $3 AND status = 'pending' \
                     AND attempts = 0 AND step = 0 AND next_attempt_at > $4 AND transition_id IN \
                     (SELECT id FROM alert_transitions WHERE alert_id = $2 AND kind = 'level_up')",
                )
                .bind(format!("superseded by level {}", t.level))
                .bind(t.alert_id)
                .bind(n.channel.as_str())
                .bind(now),
            )
            .await?;
        }
        let (status, error) = match &n.refused {
            Some(why) => ("failed", Some(text_without_nul(why).into_owned())),
            None => ("pending", None),
        };
        tx.execute(
            Sql::new(
                "INSERT INTO notifications (id, alert_id, transition_id, channel, rule, step, \
                 message, status, created_at, next_attempt_at, last_error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (transition_id, channel, step) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(t.alert_id)
            .bind(t.id)
            .bind(n.channel.as_str())
            .bind(n.rule.as_str())
            .bind(i32::try_from(t.step).unwrap_or(i32::MAX))
            .bind(json_arg(Some(n.message.to_string())))
            .bind(status)
            .bind(now)
            .bind(n.not_before.unwrap_or(now).max(now))
            .bind(error),
        )
        .await?;
    }
    Ok(())
}

/// What was delivered in the last day about the gateway's other alerts, newest first.
async fn gateway_history(
    tx: &mut Tx,
    alert: &AlertRecord,
    now: DateTime<Utc>,
) -> Result<Vec<GatewaySent>, StoreError> {
    let rows = tx
        .fetch_all(
            Sql::new(
                "SELECT n.channel, n.sent_at, t.level FROM notifications n \
                 JOIN alerts a ON a.id = n.alert_id \
                 JOIN alert_transitions t ON t.id = n.transition_id \
                 WHERE a.site = $1 AND a.gateway = $2 AND n.alert_id <> $3 \
                 AND n.status = 'sent' AND n.sent_at >= $4 \
                 ORDER BY n.sent_at DESC LIMIT $5",
            )
            .bind(alert.site.as_str())
            .bind(alert.gateway.as_str())
            .bind(alert.id)
            .bind(now - chrono::Duration::days(1))
            .bind(GATEWAY_HISTORY),
        )
        .await?;
    rows.iter()
        .map(|r| {
            let level: i16 = r.get("level")?;
            Ok(GatewaySent {
                channel: r.get("channel")?,
                at: r.time("sent_at")?,
                level: u8::try_from(level).map_err(|_| StoreError::corrupt("level", level))?,
            })
        })
        .collect()
}

/// Ingest's part: a `raised` or `level_up` transition for each of these alerts that is
/// not resolved and whose worst level was never announced, in the batch's transaction.
pub(super) async fn record_level_transitions(
    tx: &mut Tx,
    alert_ids: &[Uuid],
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut ids = alert_ids.to_vec();
    ids.sort();
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let mut insert = Sql::new(
            "INSERT INTO alert_transitions (alert_id, kind, level, step, actor, at) \
             SELECT id, CASE WHEN notified_level IS NULL THEN 'raised' ELSE 'level_up' END, \
             worst_level, 0, site || '/' || gateway, ",
        );
        insert.push_bind(at).push(" FROM alerts WHERE");
        push_unannounced(&mut insert, chunk);
        insert.push(" ORDER BY id");
        tx.execute(insert).await?;
        let mut update = Sql::new("UPDATE alerts SET notified_level = worst_level WHERE");
        push_unannounced(&mut update, chunk);
        tx.execute(update).await?;
    }
    Ok(())
}

fn push_unannounced(sql: &mut Sql, ids: &[Uuid]) {
    sql.push(" status <> 'resolved' AND (notified_level IS NULL OR worst_level > notified_level) AND id IN (");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push_bind(*id);
    }
    sql.push(")");
}

/// An operator's part: the transition of a status change, and when the alert is no
/// longer open its escalations stopped and their unsent messages cancelled, in the
/// action's transaction.
pub(super) async fn record_status_transition(
    tx: &mut Tx,
    alert: &AlertRecord,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let transition = AlertTransition {
        id: 0,
        alert_id: alert.id,
        kind: TransitionKind::of_status_change(alert.status),
        level: alert.worst_level,
        step: 0,
        actor: actor.to_string(),
        at,
    };
    insert_transition(tx, &transition, None).await?;
    if alert.status != AlertStatus::Open {
        let by = format!("{} by {actor}", alert.status.as_str());
        tx.execute(
            Sql::new(
                "UPDATE escalations SET stopped_at = $1, stopped_by = $2 \
                 WHERE alert_id = $3 AND stopped_at IS NULL",
            )
            .bind(at)
            .bind(by.as_str())
            .bind(alert.id),
        )
        .await?;
        tx.execute(
            Sql::new(
                "UPDATE notifications SET status = 'cancelled', last_error = $1 \
                 WHERE alert_id = $2 AND status = 'pending' AND step > 0",
            )
            .bind(format!("escalation stopped: {by}"))
            .bind(alert.id),
        )
        .await?;
    }
    Ok(())
}
