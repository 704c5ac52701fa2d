//! Alerts: one per track, moved by the findings that ingest stores (in the same
//! transaction, see `ingest`) and by operators' actions, each kept in its trail.

use super::sql::{Row, Sql};
use super::*;

/// Every column of `alerts`, in the order [`alert_from_row`] reads them.
pub(crate) const ALERT_COLUMNS: &str = "id, site, gateway, camera, track_id, asset, \
    component_class, severity_table, status, worst_level, worst_max_c, last_level, \
    last_max_c, first_finding_id, first_finding_at, last_finding_id, last_finding_at, \
    finding_count, cleared_at, created_at, updated_at, status_changed_at, cool_exception, \
    kind, detail";

/// Alerts and their trails.
pub trait AlertStore: Backed {
    /// One alert by id.
    fn alert(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<AlertRecord>, StoreError>> + Send {
        async move {
            let row = self.db().fetch_optional(alert_by_id(id)).await?;
            row.as_ref().map(alert_from_row).transpose()
        }
    }

    /// A page of alerts in the query's [`AlertSort`] order, keyset-paginated; a cursor
    /// of another order is [`StoreError::InvalidCursor`]. The text filter is as for
    /// [`IngestStore::list_findings`].
    fn list_alerts(
        &self,
        q: &AlertQuery,
    ) -> impl Future<Output = Result<Page<AlertRecord>, StoreError>> + Send {
        async move {
            let db = self.db();
            let limit = page_limit(q.limit);
            let mut sql = Sql::new(format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE 1 = 1"));
            push_equal(&mut sql, "site", q.site.as_deref());
            push_equal(&mut sql, "gateway", q.gateway.as_deref());
            push_equal(&mut sql, "asset", q.asset.as_deref());
            if let Some(status) = q.status {
                sql.push(" AND status = ").push_bind(status.as_str());
            }
            if let Some(min) = q.min_level {
                sql.push(" AND worst_level >= ").push_bind(i16::from(min));
            }
            push_equal(&mut sql, "component_class", q.component_class.as_deref());
            if let Some(kind) = q.kind {
                push_kind(&mut sql, kind);
            }
            if let Some(since) = q.since {
                sql.push(" AND created_at >= ").push_bind(since);
            }
            if let Some(until) = q.until {
                sql.push(" AND created_at < ").push_bind(until);
            }
            if let Some(text) = q.text.as_deref().filter(|t| !t.is_empty()) {
                push_contains(&mut sql, db.backend(), TEXT_COLUMNS, text);
            }
            if let Some(after) = &q.after {
                let (rank, at, id) = after.ranked_key(alert_listing(q.sort))?;
                let at = cursor_time(at)?;
                match q.sort {
                    AlertSort::CreatedDesc => sql.push(" AND (created_at, id) < ("),
                    AlertSort::UpdatedDesc => sql.push(" AND (updated_at, id) < ("),
                    AlertSort::WorstLevelDesc => {
                        let rank = i16::try_from(rank).map_err(|_| StoreError::InvalidCursor)?;
                        sql.push(" AND (worst_level, created_at, id) < (")
                            .push_bind(rank)
                            .push(", ")
                    }
                };
                sql.push_bind(at).push(", ").push_bind(id).push(")");
            }
            sql.push(match q.sort {
                AlertSort::CreatedDesc => " ORDER BY created_at DESC, id DESC LIMIT ",
                AlertSort::UpdatedDesc => " ORDER BY updated_at DESC, id DESC LIMIT ",
                AlertSort::WorstLevelDesc => {
                    " ORDER BY worst_level DESC, created_at DESC, id DESC LIMIT "
                }
            })
            .push_bind(limit as i64 + 1);
            let items = db
                .fetch_all(sql)
                .await?
                .iter()
                .map(alert_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(into_page(items, limit, |a| alert_cursor(q.sort, a)))
        }
    }

    /// Applies an operator action to an alert and appends it to the audit trail, in one
    /// transaction. Returns the alert as it now is. Two operators acting at once
    /// serialize on the alert row (`FOR UPDATE` on Postgres, the write lock on SQLite).
    fn record_alert_event(
        &self,
        event: &NewAlertEvent,
    ) -> impl Future<Output = Result<AlertRecord, StoreError>> + Send {
        async move {
            let mut tx = self.db().begin_write().await?;
            let lock = tx.backend().for_update();
            let status = tx
                .fetch_optional(
                    Sql::new(format!(
                        "SELECT status, kind FROM alerts WHERE id = $1{lock}"
                    ))
                    .bind(event.alert_id),
                )
                .await?
                .ok_or(StoreError::AlertNotFound(event.alert_id))?;
            let from = AlertStatus::parse(&status.get::<String>("status")?)?;
            let to = event.kind.transition(from)?;
            let fleet = status.get::<String>("kind")? != AlertKind::Hotspot.as_str();
            if fleet && from == AlertStatus::Resolved && to != from {
                // The hub ends a fleet alarm when its condition ends and raises a new
                // one if it returns; a resolved alarm reopened could stand beside it.
                return Err(StoreError::InvalidTransition {
                    action: event.kind.as_str(),
                    status: "a resolved fleet alarm (the hub raises a new one if the \
                             condition returns)",
                });
            }
            if to != from {
                let update =
                    Sql::new("UPDATE alerts SET status = $1, status_changed_at = $2 WHERE id = $3")
                        .bind(to.as_str())
                        .bind(event.at)
                        .bind(event.alert_id);
                tx.execute(update).await?;
            }
            let insert = Sql::new(
                "INSERT INTO alert_events (alert_id, kind, actor, at, from_address, note, \
                 detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(event.alert_id)
            .bind(event.kind.as_str())
            .bind(text_without_nul(&event.actor))
            .bind(event.at)
            .bind(event.from_address.as_deref().map(text_without_nul))
            .bind(event.note.as_deref().map(text_without_nul))
            .bind(sql::json_arg(event.detail.as_ref().map(|d| d.to_string())));
            tx.execute(insert).await?;
            let row = tx
                .fetch_optional(alert_by_id(event.alert_id))
                .await?
                .ok_or(StoreError::AlertNotFound(event.alert_id))?;
            let alert = alert_from_row(&row)?;
            if to != from {
                notifications::record_status_transition(&mut tx, &alert, &event.actor, event.at)
                    .await?;
            }
            tx.commit().await?;
            Ok(alert)
        }
    }

    /// An alert's audit trail, oldest first.
    fn alert_events(
        &self,
        alert_id: Uuid,
    ) -> impl Future<Output = Result<Vec<AlertEvent>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT id, alert_id, kind, actor, at, from_address, note, detail \
                 FROM alert_events WHERE alert_id = $1 ORDER BY id",
            )
            .bind(alert_id);
            let rows = self.db().fetch_all(sql).await?;
            rows.iter().map(alert_event_from_row).collect()
        }
    }

    /// Every alert action `actor` took, oldest first (a personal-data export).
    fn alert_events_by_actor(
        &self,
        actor: &str,
    ) -> impl Future<Output = Result<Vec<AlertEvent>, StoreError>> + Send {
        async move {
            let sql = Sql::new(
                "SELECT id, alert_id, kind, actor, at, from_address, note, detail \
                 FROM alert_events WHERE actor = $1 ORDER BY id",
            )
            .bind(actor);
            let rows = self.db().fetch_all(sql).await?;
            rows.iter().map(alert_event_from_row).collect()
        }
    }
}

fn alert_event_from_row(row: &Row) -> Result<AlertEvent, StoreError> {
    Ok(AlertEvent {
        id: row.get("id")?,
        event: NewAlertEvent {
            alert_id: row.get("alert_id")?,
            kind: AlertEventKind::parse(&row.get::<String>("kind")?)?,
            actor: row.get("actor")?,
            at: row.time("at")?,
            from_address: row.get("from_address")?,
            note: row.get("note")?,
            detail: row.opt_json("detail", "alert event detail")?,
        },
    })
}

impl<T: Backed> AlertStore for T {}

/// The columns the text filter of findings and alerts searches.
pub(crate) const TEXT_COLUMNS: &[&str] = &["site", "gateway", "camera", "asset", "component_class"];

pub(crate) fn alert_by_id(id: Uuid) -> Sql {
    Sql::new(format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1")).bind(id)
}

/// `AND column = value` when the filter is set. NUL becomes U+FFFD, as in stored text.
pub(crate) fn push_equal(sql: &mut Sql, column: &str, value: Option<&str>) {
    if let Some(value) = value {
        sql.push(" AND ")
            .push(column)
            .push(" = ")
            .push_bind(text_without_nul(value).into_owned());
    }
}

/// `AND (col LIKE p OR …)` (`ILIKE` on Postgres) for a contains-text filter: one bound
/// pattern per column, never text in the SQL.
pub(crate) fn push_contains(sql: &mut Sql, backend: Backend, columns: &[&str], text: &str) {
    let pattern = contains_pattern(text);
    sql.push(" AND (");
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push(column)
            .push(backend.case_insensitive_like())
            .push_bind(pattern.as_str())
            .push(" ESCAPE '\\'");
    }
    sql.push(")");
}

/// `AND` the kind filter: a cool exception is a thermal alert whose worst is level 0
/// with `cool_exception` set ([`AlertRecord::presented_kind`]).
fn push_kind(sql: &mut Sql, kind: KindFilter) {
    let cool = |sql: &mut Sql, prefix: &str| {
        sql.push(prefix)
            .push("(kind = 'hotspot' AND cool_exception = ")
            .push_bind(true)
            .push(" AND worst_level = 0)");
    };
    match kind {
        KindFilter::Kind(AlertKind::Hotspot) => {
            sql.push(" AND kind = 'hotspot'");
            cool(sql, " AND NOT ");
        }
        KindFilter::Kind(k) => {
            sql.push(" AND kind = ").push_bind(k.as_str());
        }
        KindFilter::CoolException => cool(sql, " AND "),
        KindFilter::Thermal => {
            sql.push(" AND kind = 'hotspot'");
        }
        KindFilter::Fleet => {
            sql.push(" AND kind <> 'hotspot'");
        }
    }
}

/// A cursor's timestamp; one out of range was never issued by this store.
pub(crate) fn cursor_time(us: i64) -> Result<DateTime<Utc>, StoreError> {
    rows::from_micros(us).ok_or(StoreError::InvalidCursor)
}

/// A severity level column (`int2` on Postgres).
fn level(row: &Row, column: &str) -> Result<u8, StoreError> {
    let v: i16 = row.get(column)?;
    u8::try_from(v).map_err(|_| StoreError::corrupt("severity level", v))
}

pub(crate) fn alert_from_row(row: &Row) -> Result<AlertRecord, StoreError> {
    let kind: String = row.get("kind")?;
    Ok(AlertRecord {
        id: row.get("id")?,
        kind: AlertKind::parse(&kind).ok_or_else(|| StoreError::corrupt("alert kind", kind))?,
        site: row.get("site")?,
        gateway: row.get("gateway")?,
        camera: row.get("camera")?,
        track_id: row.get("track_id")?,
        asset: row.get("asset")?,
        component_class: row.get("component_class")?,
        severity_table: row.get("severity_table")?,
        status: AlertStatus::parse(&row.get::<String>("status")?)?,
        worst_level: level(row, "worst_level")?,
        worst_max_c: row.get("worst_max_c")?,
        last_level: level(row, "last_level")?,
        last_max_c: row.get("last_max_c")?,
        first_finding_id: row.get("first_finding_id")?,
        first_finding_at: row.time("first_finding_at")?,
        last_finding_id: row.get("last_finding_id")?,
        last_finding_at: row.time("last_finding_at")?,
        finding_count: row.count("finding_count")?,
        cleared_at: row.opt_time("cleared_at")?,
        cool_exception: row.get("cool_exception")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        status_changed_at: row.opt_time("status_changed_at")?,
        detail: row.get("detail")?,
    })
}
