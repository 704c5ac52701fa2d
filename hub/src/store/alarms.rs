//! Fleet alarms: alerts the hub raises about the fleet itself (see [`AlertKind`]), kept
//! in `alerts` beside thermal ones so they share the lifecycle, the queue, the trail and
//! the notifications.
//!
//! # Invariants
//!
//! - **One unresolved alarm per gateway, kind and camera.** A partial unique index
//!   (`alerts_fleet_active`) makes raising an insert that does nothing when the alarm
//!   is already up, so several hub replicas watching the fleet raise it once.
//! - **Raised and ended with their transitions.** The `raised` transition is written in
//!   the insert's transaction, the `resolved` one (actor `hub`) in the update that ends
//!   it, so the notification outbox sees both exactly as it sees an operator's action.

use super::alerts::{alert_by_id, alert_from_row, ALERT_COLUMNS};
use super::sql::Sql;
use super::*;

/// A condition of the fleet that holds now, as the hub's watch sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetCondition {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// Which alarm (never [`AlertKind::Hotspot`]).
    pub kind: AlertKind,
    /// The camera it is about; empty for the whole gateway.
    pub camera: String,
    /// Its level (the kind's default, or the site's override).
    pub level: u8,
    /// When the condition began, as well as the hub can tell.
    pub since: DateTime<Utc>,
    /// What the hub saw, for people.
    pub detail: String,
}

impl FleetCondition {
    /// The key of the one unresolved alarm it may have.
    pub fn key(&self) -> (String, String, AlertKind, String) {
        (
            self.site.clone(),
            self.gateway.clone(),
            self.kind,
            self.camera.clone(),
        )
    }
}

/// Raising, updating and ending fleet alarms.
pub trait FleetAlarmStore: Backed {
    /// Every fleet alarm not yet resolved.
    fn unresolved_fleet_alarms(
        &self,
    ) -> impl Future<Output = Result<Vec<AlertRecord>, StoreError>> + Send {
        async move {
            let sql = Sql::new(format!(
                "SELECT {ALERT_COLUMNS} FROM alerts \
                 WHERE kind <> 'hotspot' AND status <> 'resolved' ORDER BY created_at, id"
            ));
            self.db()
                .fetch_all(sql)
                .await?
                .iter()
                .map(alert_from_row)
                .collect()
        }
    }

    /// Raises the alarm for a condition, with its `raised` transition; `None` when an
    /// unresolved alarm of the same gateway, kind and camera is already up.
    fn raise_fleet_alarm(
        &self,
        condition: &FleetCondition,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<AlertRecord>, StoreError>> + Send {
        async move {
            if !condition.kind.is_fleet() {
                return Err(StoreError::InvalidInput {
                    what: "fleet alarm",
                    reason: "a hotspot is raised by findings, not by the hub",
                });
            }
            let id = Uuid::now_v7();
            let mut tx = self.db().begin_write().await?;
            let inserted = tx
                .execute(
                    Sql::new(
                        "INSERT INTO alerts (id, site, gateway, camera, track_id, kind, detail, \
                         status, worst_level, last_level, first_finding_at, last_finding_at, \
                         finding_count, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $1, $5, $6, 'open', $7, $7, $8, $9, 0, $9, $9) \
                         ON CONFLICT (site, gateway, kind, camera) \
                         WHERE kind <> 'hotspot' AND status <> 'resolved' DO NOTHING",
                    )
                    .bind(id)
                    .bind(condition.site.as_str())
                    .bind(condition.gateway.as_str())
                    .bind(condition.camera.as_str())
                    .bind(condition.kind.as_str())
                    .bind(text_without_nul(&condition.detail))
                    .bind(i16::from(condition.level))
                    .bind(condition.since.min(now))
                    .bind(now),
                )
                .await?;
            if inserted == 0 {
                return Ok(None);
            }
            notifications::record_level_transitions(&mut tx, &[id], now).await?;
            let row = tx
                .fetch_optional(alert_by_id(id))
                .await?
                .ok_or(StoreError::AlertNotFound(id))?;
            let alert = alert_from_row(&row)?;
            tx.commit().await?;
            Ok(Some(alert))
        }
    }

    /// Notes that an unresolved alarm's condition still holds, with what the hub sees
    /// now. Writes only when the detail changed, so a steady condition costs nothing.
    fn refresh_fleet_alarm(
        &self,
        id: Uuid,
        detail: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "UPDATE alerts SET detail = $1, last_finding_at = $2 \
                 WHERE id = $3 AND kind <> 'hotspot' AND status <> 'resolved' \
                 AND (detail IS NULL OR detail <> $1)",
            )
            .bind(text_without_nul(detail))
            .bind(now)
            .bind(id);
            Ok(self.db().execute(sql).await? > 0)
        }
    }

    /// Ends an alarm whose condition is over: resolved by `hub`, `cleared_at` = `now`,
    /// the note in its trail and its `resolved` transition, in one transaction. `None`
    /// when it was already resolved (by a person, or by another replica).
    fn end_fleet_alarm(
        &self,
        id: Uuid,
        note: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<AlertRecord>, StoreError>> + Send {
        async move {
            let mut tx = self.db().begin_write().await?;
            let ended = tx
                .execute(
                    Sql::new(
                        "UPDATE alerts SET status = 'resolved', status_changed_at = $1, \
                         cleared_at = $1, last_finding_at = $1, updated_at = $1 \
                         WHERE id = $2 AND kind <> 'hotspot' AND status <> 'resolved'",
                    )
                    .bind(now)
                    .bind(id),
                )
                .await?;
            if ended == 0 {
                return Ok(None);
            }
            tx.execute(
                Sql::new(
                    "INSERT INTO alert_events (alert_id, kind, actor, at, note) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(AlertEventKind::Resolve.as_str())
                .bind(HUB_ACTOR)
                .bind(now)
                .bind(text_without_nul(note)),
            )
            .await?;
            let row = tx
                .fetch_optional(alert_by_id(id))
                .await?
                .ok_or(StoreError::AlertNotFound(id))?;
            let alert = alert_from_row(&row)?;
            notifications::record_status_transition(&mut tx, &alert, HUB_ACTOR, now).await?;
            tx.commit().await?;
            Ok(Some(alert))
        }
    }
}

impl<T: Backed> FleetAlarmStore for T {}

/// The actor of what the hub does by itself (ending a fleet alarm).
pub const HUB_ACTOR: &str = "hub";
