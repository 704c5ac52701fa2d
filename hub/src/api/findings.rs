//! Findings as gateways and uploads reported them, with the hub's `received_at`.
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/findings` (filters below, `?q=` search, `?track=`; keyset pages) | viewer |
//! | `GET /api/v1/findings/{id}` | viewer |
//!
//! The finding's JSON is the wire format's ([`chitti_common::finding::Finding`]) with
//! `received_at` beside its fields.

use super::accounts::parse_uuid;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::{parse_cursor, ApiQuery, ApiState, ListPage};
use crate::store::IngestStore;
use crate::store::{FindingQuery, Role, StoredFinding};
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_findings))
        .routes(routes!(finding))
}

/// Filters of the finding list; they combine.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FindingParams {
    /// Only this site.
    pub site: Option<String>,
    /// Only this gateway id (in every site, unless `site` is set too).
    pub gateway: Option<String>,
    /// Only this camera id.
    pub camera: Option<String>,
    /// Only this asset.
    pub asset: Option<String>,
    /// Only severity levels at or above this.
    #[param(maximum = 255)]
    pub min_level: Option<u8>,
    /// Only findings received at or after this (hub clock, RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only findings received before this (hub clock, RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Only this detected component class.
    pub component_class: Option<String>,
    /// Only this track (episode): the findings behind one alert.
    pub track: Option<uuid::Uuid>,
    /// Only findings whose site, gateway, camera, asset or component class contains
    /// this, case-insensitively (1 to 200 characters; empty: no filter).
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Page size, 1 to 1000 (default 100; 0 is read as 1, larger values as 1000).
    #[param(maximum = 4294967295u32)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub after: Option<String>,
}

impl FindingParams {
    /// The store query these parameters ask for, or a 400 naming what is wrong (the
    /// list and the CSV export read them the same way).
    pub(crate) fn into_query(self) -> Result<FindingQuery, ApiError> {
        Ok(FindingQuery {
            site: self.site,
            gateway: self.gateway,
            camera: self.camera,
            asset: self.asset,
            min_level: self.min_level,
            since: self.since,
            until: self.until,
            component_class: self.component_class,
            track: self.track,
            text: search_text(self.q)?,
            limit: self.limit.unwrap_or(crate::store::DEFAULT_PAGE_LIMIT),
            after: parse_cursor(&self.after)?,
        })
    }
}

/// Longest `?q=`, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;

/// A `?q=` search text: `None` when absent or empty, a 400 when too long.
pub(crate) fn search_text(q: Option<String>) -> Result<Option<String>, ApiError> {
    match q {
        Some(q) if q.chars().count() > MAX_SEARCH_CHARS => Err(ApiError::bad_request(format!(
            "q is at most {MAX_SEARCH_CHARS} characters"
        ))),
        Some(q) if q.is_empty() => Ok(None),
        q => Ok(q),
    }
}

/// A finding as the API shows it: the reported finding and when the hub received it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingView {
    /// When the hub received it.
    pub received_at: DateTime<Utc>,
    /// The finding as reported.
    #[serde(flatten)]
    pub finding: chitti_common::finding::Finding,
}

impl From<StoredFinding> for FindingView {
    fn from(f: StoredFinding) -> Self {
        Self {
            received_at: f.received_at,
            finding: f.finding,
        }
    }
}

/// A page of findings, newest received first.
#[utoipa::path(
    get,
    path = "/api/v1/findings",
    tag = "findings",
    params(FindingParams),
    responses(
        (status = 200, description = "A page of findings, newest received first", body = ListPage<FindingView>),
        (status = 400, description = "An invalid filter or cursor, or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_findings(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<FindingParams>,
) -> Result<Json<ListPage<FindingView>>, ApiError> {
    p.require(Role::Viewer)?;
    let query = q.into_query()?;
    let page = s.store.list_findings(&query).await?;
    Ok(Json(ListPage::of(page, FindingView::from)))
}

/// One finding.
#[utoipa::path(
    get,
    path = "/api/v1/findings/{id}",
    tag = "findings",
    params(("id" = uuid::Uuid, Path, description = "Finding id")),
    responses(
        (status = 200, description = "The finding", body = FindingView),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such finding", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn finding(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<FindingView>, ApiError> {
    p.require(Role::Viewer)?;
    let id = parse_uuid("finding", &id)?;
    let f = s
        .store
        .finding(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("finding {id}")))?;
    Ok(Json(FindingView::from(f)))
}
