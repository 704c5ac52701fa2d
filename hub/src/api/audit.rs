//! The audit trail, read: who did what, to what, when and from where.
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/audit` (`?actor=&action=&target=&since=&until=`; keyset pages) | admin |
//! | `GET /api/v1/audit/export.csv` (the same filters): every matching entry | admin |
//!
//! The entries are the hash chain the store keeps ([`crate::store::AuditLog`]); each
//! carries its `seq` and `hash`, so an exported copy can be checked against a later
//! `chitti-hub audit verify`.

use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::reports::{csv_bytes, csv_response, header_row, Export};
use super::{parse_cursor, ApiQuery, ApiState, ListPage};
use crate::store::{AuditLog, AuditQuery, AuditRecord, Role, MAX_PAGE_LIMIT};
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(audit_csv))
}

/// Filters of the audit trail; they combine.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only entries by this actor (a user name, a token's name, `system`, `hub` …).
    pub actor: Option<String>,
    /// Only this action (`user.update`); `user.*` selects a family.
    pub action: Option<String>,
    /// Only entries about this object (a user name, `site/…`, `rollout/…` …).
    pub target: Option<String>,
    /// Only entries at or after this (hub clock, RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only entries before this (hub clock, RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Page size, 1 to 1000 (default 100; 0 is read as 1, larger values as 1000).
    #[param(maximum = 4294967295u32)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub after: Option<String>,
}

impl AuditParams {
    /// The store query, or a 400 naming what is wrong.
    pub(crate) fn into_query(self) -> Result<AuditQuery, ApiError> {
        let non_empty = |v: Option<String>| v.filter(|v| !v.is_empty());
        Ok(AuditQuery {
            actor: non_empty(self.actor),
            action: non_empty(self.action),
            target: non_empty(self.target),
            since: self.since,
            until: self.until,
            limit: self.limit.unwrap_or(crate::store::DEFAULT_PAGE_LIMIT),
            after: parse_cursor(&self.after)?,
        })
    }
}

/// One audit entry as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Place in the hash chain (1, 2, 3 …).
    pub seq: i64,
    /// When (hub clock).
    pub at: DateTime<Utc>,
    /// Who: a user name, a token's name, `system` or `hub`; `former-user-…` once
    /// pseudonymised.
    pub actor: String,
    /// What (`user.update`, `auth.login_failed`, `gateway.config` …).
    pub action: String,
    /// To what.
    pub target: String,
    /// From where (client address), when known.
    pub from_address: Option<String>,
    /// Structured detail (`null` when none).
    #[schema(value_type = Option<Object>)]
    pub detail: serde_json::Value,
    /// The entry's hash in the chain (hex SHA-256).
    pub hash: String,
    /// Whether a person named in it was pseudonymised.
    pub pseudonymised: bool,
}

impl From<AuditRecord> for AuditEntryView {
    fn from(r: AuditRecord) -> Self {
        Self {
            seq: r.seq,
            at: r.event.at,
            actor: r.event.actor,
            action: r.event.action,
            target: r.event.target,
            from_address: r.event.from_address,
            detail: r.event.detail,
            hash: r.hash,
            pseudonymised: r.pseudonymised,
        }
    }
}

/// A page of the audit trail, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "admin",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of audit entries, newest first", body = ListPage<AuditEntryView>),
        (status = 400, description = "An invalid filter or cursor, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_audit(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Json<ListPage<AuditEntryView>>, ApiError> {
    p.require(Role::Admin)?;
    let page = s.store.audit_page(&q.into_query()?).await?;
    Ok(Json(ListPage::of(page, AuditEntryView::from)))
}

/// Columns of `audit/export.csv`, in order: seq, at (RFC 3339 UTC, microseconds),
/// actor, action, target, from_address, detail (JSON), hash, pseudonymised.
pub const AUDIT_COLUMNS: &[&str] = &[
    "seq",
    "at",
    "actor",
    "action",
    "target",
    "from_address",
    "detail",
    "hash",
    "pseudonymised",
];

/// Every entry the filters match, as CSV.
#[utoipa::path(
    get,
    path = "/api/v1/audit/export.csv",
    tag = "admin",
    description = "Every audit entry matching the list's filters, newest first, as CSV (RFC 4180, UTF-8, a header row first). Columns: seq, at, actor, action, target, from_address, detail (JSON), hash, pseudonymised. `after` starts after that cursor; `limit` is ignored (the export pages internally and streams).",
    params(AuditParams),
    responses(
        (status = 200, description = "The entries as CSV", body = String, content_type = "text/csv"),
        (status = 400, description = "An invalid filter or cursor, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn audit_csv(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let mut query = q.into_query()?;
    query.limit = MAX_PAGE_LIMIT;
    let export = AuditExport {
        s,
        query,
        header: true,
        done: false,
    };
    csv_response(export, "audit").await
}

struct AuditExport {
    s: ApiState,
    query: AuditQuery,
    header: bool,
    done: bool,
}

impl Export for AuditExport {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        if self.done {
            return Ok(None);
        }
        let page = self.s.store.audit_page(&self.query).await?;
        let mut rows = Vec::with_capacity(page.items.len() + 1);
        if std::mem::take(&mut self.header) {
            rows.push(header_row(AUDIT_COLUMNS));
        }
        for r in page.items {
            rows.push(vec![
                r.seq.to_string(),
                r.event.at.to_rfc3339_opts(SecondsFormat::Micros, true),
                r.event.actor,
                r.event.action,
                r.event.target,
                r.event.from_address.unwrap_or_default(),
                r.event.detail.to_string(),
                r.hash,
                r.pseudonymised.to_string(),
            ]);
        }
        match page.next_cursor {
            Some(c) => self.query.after = Some(c),
            None => self.done = true,
        }
        csv_bytes(&rows).map(Some)
    }
}
