//! Retention, seen and steered by admins: the policy, what each run removed and how
//! much each kind of data takes, and holds that keep findings past their retention.
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/retention`: policy, the newest runs, storage per kind | admin |
//! | `GET /api/v1/retention/holds`, `POST /api/v1/retention/holds` | admin |
//! | `POST /api/v1/retention/holds/{id}/release` | admin |
//!
//! A hold is a legal hold or a kept inspection report; its scope (site, asset,
//! observation time) is optional field by field. Placing and releasing one is audited.

use super::accounts::parse_uuid;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{audit, enum_schema, ApiJson, ApiState, ListPage};
use crate::retention::RetentionConfig;
use crate::store::{
    HoldKind, NewRetentionHold, RetentionHold, RetentionRemoved, RetentionRun, RetentionStore,
    Role, StorageUsage,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Runs shown by `GET /api/v1/retention`.
pub const RUNS_SHOWN: u32 = 20;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(retention_status))
        .routes(routes!(list_holds, add_hold))
        .routes(routes!(release_hold))
}

fn hold_kind_schema() -> Object {
    enum_schema(
        HoldKind::NAMES,
        false,
        "`legal_hold` (litigation, an investigation) or `kept_report` (an inspection report whose inputs must stay)",
    )
}

/// Retention as it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionStatus {
    /// The policy (`[retention]` of the hub's configuration).
    #[schema(value_type = Object)]
    pub policy: RetentionConfig,
    /// The newest runs, newest first.
    pub runs: Vec<RetentionRunView>,
    /// Storage per kind as of the newest run (empty before the first).
    pub usage: Vec<StorageUsageView>,
}

/// One retention run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionRunView {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// The replica that ran it.
    pub holder: String,
    /// What it removed, per kind (and the expired findings it kept).
    #[schema(value_type = Object)]
    pub removed: RetentionRemoved,
    /// Why it failed (`null`: it did not).
    pub error: Option<String>,
}

/// How much one kind of data takes.
#[derive(Debug, Serialize, ToSchema)]
pub struct StorageUsageView {
    /// `findings`, `alerts`, `telemetry`, `dead_letters`, `audit_log`, `evidence_index`,
    /// `evidence_blobs`.
    pub kind: String,
    /// Rows (blobs, for `evidence_blobs`).
    pub rows: u64,
    /// Bytes (tables with their indexes; blobs by size).
    pub bytes: u64,
}

impl From<StorageUsage> for StorageUsageView {
    fn from(u: StorageUsage) -> Self {
        Self {
            kind: u.kind,
            rows: u.rows,
            bytes: u.bytes,
        }
    }
}

impl From<RetentionRun> for RetentionRunView {
    fn from(r: RetentionRun) -> Self {
        Self {
            started_at: r.started_at,
            finished_at: r.finished_at,
            holder: r.holder,
            removed: r.removed,
            error: r.error,
        }
    }
}

/// The retention policy, the newest runs and storage per kind.
#[utoipa::path(
    get,
    path = "/api/v1/retention",
    tag = "admin",
    responses(
        (status = 200, description = "Policy, runs, storage", body = RetentionStatus),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn retention_status(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<RetentionStatus>, ApiError> {
    p.require(Role::Admin)?;
    let runs = s.store.retention_runs(RUNS_SHOWN).await?;
    let usage = runs
        .first()
        .map(|r| r.usage.clone())
        .unwrap_or_default()
        .into_iter()
        .map(StorageUsageView::from)
        .collect();
    Ok(Json(RetentionStatus {
        policy: (*s.retention).clone(),
        runs: runs.into_iter().map(RetentionRunView::from).collect(),
        usage,
    }))
}

/// A hold to place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// What kind of hold.
    #[schema(schema_with = hold_kind_schema)]
    pub kind: String,
    /// Only this site's findings (default: every site).
    pub site: Option<String>,
    /// Only this asset's findings.
    pub asset: Option<String>,
    /// Only findings observed at or after this.
    pub from: Option<DateTime<Utc>>,
    /// Only findings observed before this.
    pub until: Option<DateTime<Utc>>,
    /// Why: a case number, a report's title (1 to 500 characters).
    pub reason: String,
}

/// A hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldView {
    /// Its id.
    pub id: Uuid,
    /// Its kind.
    #[schema(schema_with = hold_kind_schema)]
    pub kind: String,
    /// Site, when limited to one.
    pub site: Option<String>,
    /// Asset, when limited to one.
    pub asset: Option<String>,
    /// Observed from.
    pub from: Option<DateTime<Utc>>,
    /// Observed until.
    pub until: Option<DateTime<Utc>>,
    /// Why.
    pub reason: String,
    /// Who placed it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Who released it (`null` while it holds).
    pub released_by: Option<String>,
    /// When it was released.
    pub released_at: Option<DateTime<Utc>>,
}

impl From<RetentionHold> for HoldView {
    fn from(h: RetentionHold) -> Self {
        let (released_by, released_at) = match h.released {
            Some((by, at)) => (Some(by), Some(at)),
            None => (None, None),
        };
        Self {
            id: h.id,
            kind: h.hold.kind.as_str().into(),
            site: h.hold.site,
            asset: h.hold.asset,
            from: h.hold.from,
            until: h.hold.until,
            reason: h.hold.reason,
            created_by: h.hold.created_by,
            created_at: h.hold.created_at,
            released_by,
            released_at,
        }
    }
}

/// Every hold, newest first, released ones too.
#[utoipa::path(
    get,
    path = "/api/v1/retention/holds",
    tag = "admin",
    responses(
        (status = 200, description = "The holds, newest first", body = ListPage<HoldView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_holds(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<ListPage<HoldView>>, ApiError> {
    p.require(Role::Admin)?;
    let holds = s.store.retention_holds().await?;
    Ok(Json(ListPage::whole(
        holds.into_iter().map(HoldView::from).collect(),
    )))
}

/// Places a hold: the findings it covers are kept past their retention until it is
/// released.
#[utoipa::path(
    post,
    path = "/api/v1/retention/holds",
    tag = "admin",
    request_body = HoldRequest,
    responses(
        (status = 201, description = "Placed", body = HoldView),
        (status = 400, description = "An unknown kind, an empty reason, `from` not before `until`, or an unknown field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn add_hold(
    State(s): State<ApiState>,
    p: Principal,
    ApiJson(req): ApiJson<HoldRequest>,
) -> Result<(StatusCode, Json<HoldView>), ApiError> {
    p.require(Role::Admin)?;
    let kind: HoldKind = req.kind.parse().map_err(ApiError::bad_request)?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::bad_request("reason: 1 to 500 characters"));
    }
    if let (Some(from), Some(until)) = (req.from, req.until) {
        if from >= until {
            return Err(ApiError::bad_request("from must be before until"));
        }
    }
    for (key, id) in [("site", &req.site), ("asset", &req.asset)] {
        if let Some(id) = id {
            chitti_common::protocol::validate_id(key, id)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
    }
    let hold = s
        .store
        .add_retention_hold(&NewRetentionHold {
            kind,
            site: req.site,
            asset: req.asset,
            from: req.from,
            until: req.until,
            reason: reason.to_string(),
            created_by: p.actor(),
            created_at: Utc::now(),
        })
        .await?;
    audit(
        &s,
        &p,
        "retention.hold",
        &format!("hold/{}", hold.id),
        serde_json::json!({
            "kind": kind.as_str(), "site": hold.hold.site, "asset": hold.hold.asset,
            "from": hold.hold.from, "until": hold.hold.until, "reason": hold.hold.reason,
        }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(HoldView::from(hold))))
}

/// Releases a hold: its findings follow the policy again (the next run may remove them).
#[utoipa::path(
    post,
    path = "/api/v1/retention/holds/{id}/release",
    tag = "admin",
    params(("id" = Uuid, Path, description = "Hold id")),
    responses(
        (status = 204, description = "Released"),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such hold holding", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn release_hold(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Admin)?;
    let id = parse_uuid("hold", &id)?;
    if !s
        .store
        .release_retention_hold(id, &p.actor(), Utc::now())
        .await?
    {
        return Err(ApiError::not_found(format!(
            "hold {id} (or it was released)"
        )));
    }
    audit(
        &s,
        &p,
        "retention.release",
        &format!("hold/{id}"),
        serde_json::Value::Null,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
