//! Alerts, one per track (site, gateway, camera, track id), and their operator
//! workflow.
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/alerts` (filters below, `?q=` search, `?sort=`; keyset pages per order) | viewer |
//! | `GET /api/v1/alerts/{id}` (with its trail and its track's findings over time) | viewer |
//! | `POST /api/v1/alerts/{id}/acknowledge` (open → acknowledged) | operator |
//! | `POST /api/v1/alerts/{id}/resolve` (open, acknowledged → resolved; optional "verified fixed" evidence) | operator |
//! | `POST /api/v1/alerts/{id}/reopen` (acknowledged, resolved → open) | operator |
//! | `POST /api/v1/alerts/{id}/comment` (a note) | operator |
//! | `POST /api/v1/alerts/{id}/assign` (to someone) | operator |
//!
//! A transition the status does not allow is 409. Every action is kept in the alert's
//! trail with who, when, from where and the note, and announced on the live stream.

use super::accounts::parse_uuid;
use super::auth::Principal;
use super::error::{ApiError, ErrorBody};
use super::findings::{search_text, FindingView};
use super::{enum_schema, json_object, json_rejection, parse_cursor, ApiQuery, ApiState, ListPage};
use crate::store::{
    AlertEventKind, AlertQuery, AlertRecord, AlertSort, AlertStatus, FindingQuery, NewAlertEvent,
    Role,
};
use crate::store::{AlertStore, EvidenceIndex, IngestStore};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;
/// At most this many pages (of 1000) of a track's findings in an alert's history.
const MAX_HISTORY_PAGES: usize = 10;
/// Longest assignee, in characters.
pub const MAX_ASSIGNEE_CHARS: usize = 200;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(alert))
        .routes(routes!(acknowledge))
        .routes(routes!(resolve))
        .routes(routes!(reopen))
        .routes(routes!(comment))
        .routes(routes!(assign))
}

fn status_schema() -> Object {
    enum_schema(
        AlertStatus::NAMES,
        false,
        "Where the alert is in its workflow",
    )
}

fn status_filter_schema() -> Object {
    enum_schema(AlertStatus::NAMES, false, "Only alerts with this status")
}

fn kind_filter_schema() -> Object {
    enum_schema(
        crate::store::KindFilter::NAMES,
        false,
        "Only alerts of this kind, or group (`thermal`: hot spots and cool exceptions; `fleet`: every fleet alarm)",
    )
}

fn kind_schema() -> Object {
    enum_schema(
        crate::store::KindFilter::presented_kinds(),
        false,
        "What the alert is about: a thermal track (`hotspot`, or `cool_exception` when its worst is a level-0 cool exception) or a fleet alarm the hub raised",
    )
}

fn sort_schema() -> Object {
    enum_schema(AlertSort::NAMES, false, "The order of the list")
}

fn event_kind_schema() -> Object {
    enum_schema(AlertEventKind::NAMES, false, "What the operator did")
}

/// Filters of the alert list; they combine.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    /// Only this site.
    pub site: Option<String>,
    /// Only this gateway id.
    pub gateway: Option<String>,
    /// Only this asset.
    pub asset: Option<String>,
    /// Only this status.
    #[param(schema_with = status_filter_schema)]
    pub status: Option<String>,
    /// Only alerts whose worst level is at or above this.
    #[param(maximum = 255)]
    pub min_level: Option<u8>,
    /// Only this component class.
    pub component_class: Option<String>,
    /// Only this kind: `hotspot`, `cool_exception`, a fleet alarm's kind, or the
    /// groups `thermal` and `fleet`.
    #[param(schema_with = kind_filter_schema)]
    pub kind: Option<String>,
    /// Only alerts created at or after this (hub clock, RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only alerts created before this (hub clock, RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Only alerts whose site, gateway, camera, asset or component class contains
    /// this, case-insensitively (1 to 200 characters; empty: no filter).
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// The order: `created_desc` (default), `worst_level_desc` (worst first, then
    /// newest) or `updated_desc` (most recently changed first). A cursor continues
    /// only the order it came from.
    #[param(schema_with = sort_schema)]
    pub sort: Option<String>,
    /// Page size, 1 to 1000 (default 100; 0 is read as 1, larger values as 1000).
    #[param(maximum = 4294967295u32)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub after: Option<String>,
}

impl AlertParams {
    /// The store query these parameters ask for, or a 400 naming what is wrong (the
    /// list and the CSV export read them the same way).
    pub(crate) fn into_query(self) -> Result<AlertQuery, ApiError> {
        Ok(AlertQuery {
            site: self.site,
            gateway: self.gateway,
            asset: self.asset,
            status: self.status.as_deref().map(parse_status).transpose()?,
            min_level: self.min_level,
            component_class: self.component_class,
            kind: match self.kind.as_deref() {
                None | Some("") => None,
                Some(kind) => Some(crate::store::KindFilter::parse(kind).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "kind {kind:?}: expected {}",
                        crate::store::KindFilter::NAMES.join(", ")
                    ))
                })?),
            },
            since: self.since,
            until: self.until,
            text: search_text(self.q)?,
            sort: match self.sort.as_deref() {
                None | Some("") => AlertSort::default(),
                Some(sort) => sort.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "sort {sort:?}: expected {}",
                        AlertSort::NAMES.join(", ")
                    ))
                })?,
            },
            limit: self.limit.unwrap_or(crate::store::DEFAULT_PAGE_LIMIT),
            after: parse_cursor(&self.after)?,
        })
    }
}

/// An alert as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    /// Alert id.
    pub id: Uuid,
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// What it is about.
    #[schema(schema_with = kind_schema)]
    pub kind: &'static str,
    /// Camera id; empty for a fleet alarm about the whole gateway.
    pub camera: String,
    /// The agent's track (episode) id; a fleet alarm's own episode id.
    pub track_id: Uuid,
    /// Asset, as the latest finding that named one said.
    pub asset: Option<String>,
    /// Component class, as the latest finding that named one said.
    pub component_class: Option<String>,
    /// Severity table of the track's findings (`null` for a fleet alarm).
    pub severity_table: Option<String>,
    /// Workflow status.
    #[schema(schema_with = status_schema)]
    pub status: &'static str,
    /// Highest severity level of any finding of the track (a fleet alarm: its level).
    pub worst_level: u8,
    /// Highest max °C of any finding of the track (`null` for a fleet alarm).
    pub worst_max_c: Option<f64>,
    /// Severity level of the latest finding.
    pub last_level: u8,
    /// Max °C of the latest finding (`null` for a fleet alarm).
    pub last_max_c: Option<f64>,
    /// `observed_at` of the earliest finding (a fleet alarm: when its condition began).
    pub first_finding_at: DateTime<Utc>,
    /// `observed_at` of the latest finding (a fleet alarm: when it was last seen to
    /// hold).
    pub last_finding_at: DateTime<Utc>,
    /// How many findings the track has (0 for a fleet alarm).
    pub finding_count: u64,
    /// `observed_at` of the first `cleared` finding (a fleet alarm: when its
    /// condition ended).
    pub cleared_at: Option<DateTime<Utc>>,
    /// What the hub saw, for a fleet alarm.
    pub detail: Option<String>,
    /// How long a fleet alarm's condition lasted (so far, while it holds), seconds.
    pub duration_s: Option<i64>,
    /// Whether any finding of the track is a cool exception: graded level 0 because
    /// the component is far colder than its reference (an open phase, a lost load),
    /// which needs investigating. Shown as a cool exception while `worst_level` is 0.
    pub cool_exception: bool,
    /// When the hub opened it.
    pub created_at: DateTime<Utc>,
    /// When a finding or an action last changed it (hub clock).
    pub updated_at: DateTime<Utc>,
}

impl From<AlertRecord> for AlertView {
    fn from(a: AlertRecord) -> Self {
        Self {
            kind: a.presented_kind(),
            duration_s: a.outage(Utc::now()).map(|d| d.num_seconds()),
            detail: a.detail,
            id: a.id,
            site: a.site,
            gateway: a.gateway,
            camera: a.camera,
            track_id: a.track_id,
            asset: a.asset,
            component_class: a.component_class,
            severity_table: a.severity_table,
            status: a.status.as_str(),
            worst_level: a.worst_level,
            worst_max_c: a.worst_max_c,
            last_level: a.last_level,
            last_max_c: a.last_max_c,
            first_finding_at: a.first_finding_at,
            last_finding_at: a.last_finding_at,
            finding_count: a.finding_count,
            cleared_at: a.cleared_at,
            cool_exception: a.cool_exception,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

fn parse_status(s: &str) -> Result<AlertStatus, ApiError> {
    AlertStatus::parse(s).map_err(|_| {
        ApiError::bad_request(format!(
            "status {s:?}: expected open, acknowledged or resolved"
        ))
    })
}

/// A page of alerts, in the order asked for (newest created first by default).
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(AlertParams),
    responses(
        (status = 200, description = "A page of alerts", body = ListPage<AlertView>),
        (status = 400, description = "An invalid filter, order or cursor (also a cursor of another order), or an unknown parameter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn list_alerts(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AlertParams>,
) -> Result<Json<ListPage<AlertView>>, ApiError> {
    p.require(Role::Viewer)?;
    let query = q.into_query()?;
    let page = s.store.list_alerts(&query).await?;
    Ok(Json(ListPage::of(page, AlertView::from)))
}

/// One entry of an alert's trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertEventView {
    /// Sequence number.
    pub id: i64,
    /// What was done.
    #[schema(schema_with = event_kind_schema)]
    pub kind: &'static str,
    /// Who (a user, or `user (token name)`).
    pub actor: String,
    /// When (hub clock).
    pub at: DateTime<Utc>,
    /// The client's address.
    pub from_address: Option<String>,
    /// The operator's note.
    pub note: Option<String>,
    /// What else the action carried (`{assignee}`, `{verified_fixed_sha256}`).
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

/// An alert with its trail and its track's findings over time.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertDetail {
    /// The alert.
    #[serde(flatten)]
    pub alert: AlertView,
    /// Its trail, oldest first.
    pub events: Vec<AlertEventView>,
    /// The track's findings, oldest first: °C and level over time.
    pub history: Vec<HistoryPoint>,
}

/// One finding of an alert's track.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPoint {
    /// Finding id.
    pub finding_id: Uuid,
    /// When the agent observed it.
    pub observed_at: DateTime<Utc>,
    /// Raised, updated or cleared.
    pub state: chitti_common::finding::TrackState,
    /// Severity level.
    pub level: u8,
    /// Whether the finding is a cool exception (level 0, far colder than its reference).
    pub cool_exception: bool,
    /// Hottest pixel, °C.
    pub max_c: f64,
    /// ΔT against the reference, when there was one.
    pub delta_c: Option<f64>,
}

impl From<&FindingView> for HistoryPoint {
    fn from(f: &FindingView) -> Self {
        let f = &f.finding;
        Self {
            finding_id: f.id,
            observed_at: f.observed_at,
            state: f.track.state,
            level: f.severity.level,
            cool_exception: f.severity.cool_exception,
            max_c: f.hotspot.max_c,
            delta_c: f.severity.inputs.delta_c,
        }
    }
}

/// One alert, with its trail and its track's findings.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{id}",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    responses(
        (status = 200, description = "The alert", body = AlertDetail),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub(crate) async fn alert(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<AlertDetail>, ApiError> {
    p.require(Role::Viewer)?;
    let id = parse_uuid("alert", &id)?;
    let a = s
        .store
        .alert(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("alert {id}")))?;
    let events = s
        .store
        .alert_events(id)
        .await?
        .into_iter()
        .map(|e| AlertEventView {
            id: e.id,
            kind: e.event.kind.as_str(),
            actor: e.event.actor,
            at: e.event.at,
            from_address: e.event.from_address,
            note: e.event.note,
            detail: e.event.detail,
        })
        .collect();
    // The track's findings: one indexed query (site, gateway, camera, track), paged
    // in case a long episode has more than a page.
    let mut history = Vec::new();
    let mut query = FindingQuery {
        site: Some(a.site.clone()),
        gateway: Some(a.gateway.clone()),
        camera: Some(a.camera.clone()),
        track: Some(a.track_id),
        limit: crate::store::MAX_PAGE_LIMIT,
        ..FindingQuery::default()
    };
    for _ in 0..MAX_HISTORY_PAGES {
        let page = s.store.list_findings(&query).await?;
        history.extend(
            page.items
                .into_iter()
                .map(|f| HistoryPoint::from(&FindingView::from(f))),
        );
        match page.next_cursor {
            Some(c) => query.after = Some(c),
            None => break,
        }
    }
    history.sort_by_key(|h| h.observed_at);
    Ok(Json(AlertDetail {
        alert: AlertView::from(a),
        events,
        history,
    }))
}

/// The body of `acknowledge` and `reopen` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// Why.
    #[schema(max_length = 4000)]
    pub note: Option<String>,
}

/// The body of `resolve` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// Why, or what was done.
    #[schema(max_length = 4000)]
    pub note: Option<String>,
    /// The SHA-256 of "verified fixed" evidence already on the hub (an upload's file,
    /// or a gateway's evidence after the repair).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub verified_fixed_sha256: Option<String>,
}

/// The body of `comment`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    /// The comment.
    #[schema(min_length = 1, max_length = 4000)]
    pub note: String,
}

/// The body of `assign`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// Who (a user name, a crew, a contractor).
    #[schema(min_length = 1, max_length = 200)]
    pub assignee: String,
    /// Why.
    #[schema(max_length = 4000)]
    pub note: Option<String>,
}

/// An action's JSON body. Where the body is optional (`default` is `Some`), an empty
/// body or `null` is the default. A body that is there must say it is JSON (415).
pub(crate) fn action_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    default: Option<T>,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| json_rejection(r.status(), r.body_text()))?;
    if body.is_empty() {
        return default.ok_or_else(|| ApiError::bad_request("this action needs a JSON body"));
    }
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false);
    if !json {
        return Err(json_rejection(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            String::new(),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    match default {
        // An optional body may be empty or `null`.
        Some(default) if value.is_null() => Ok(default),
        _ => json_object(value),
    }
}

fn check_note(note: &Option<String>) -> Result<(), ApiError> {
    match note {
        Some(n) if n.chars().count() > MAX_NOTE_CHARS => Err(ApiError::bad_request(format!(
            "a note is at most {MAX_NOTE_CHARS} characters"
        ))),
        _ => Ok(()),
    }
}

/// Applies an action (the caller's role already checked) and announces the change.
async fn act(
    s: &ApiState,
    p: &Principal,
    id: &str,
    kind: AlertEventKind,
    note: Option<String>,
    detail: Option<serde_json::Value>,
) -> Result<Json<AlertView>, ApiError> {
    let id = parse_uuid("alert", id)?;
    check_note(&note)?;
    let updated = s
        .store
        .record_alert_event(&NewAlertEvent {
            alert_id: id,
            kind,
            actor: p.actor(),
            at: Utc::now(),
            from_address: p.from.clone(),
            note,
            detail,
        })
        .await?;
    tracing::info!(alert = %id, action = kind.as_str(), actor = %p.actor(), "alert action");
    s.live.alerts_changed(vec![id]);
    Ok(Json(AlertView::from(updated)))
}

/// Acknowledges an open alert.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/acknowledge",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    request_body(content = Option<NoteRequest>, description = "Optional: a note"),
    responses(
        (status = 200, description = "The alert as it now is", body = AlertView),
        (status = 400, description = "An invalid id or body", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the operator role, or a cookie session without X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 409, description = "The alert is not open", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "A body without a JSON content type", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn acknowledge(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AlertView>, ApiError> {
    p.require(Role::Operator)?;
    let req = action_body(&headers, body, Some(NoteRequest::default()))?;
    act(&s, &p, &id, AlertEventKind::Acknowledge, req.note, None).await
}

/// Resolves an open or acknowledged alert, optionally with "verified fixed" evidence.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/resolve",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    request_body(content = Option<ResolveRequest>, description = "Optional: a note and evidence"),
    responses(
        (status = 200, description = "The alert as it now is", body = AlertView),
        (status = 400, description = "An invalid id or body", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the operator role, or a cookie session without X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such alert, or no such evidence", body = ErrorBody),
        (status = 409, description = "The alert is already resolved", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "A body without a JSON content type", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn resolve(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AlertView>, ApiError> {
    p.require(Role::Operator)?;
    let req = action_body(&headers, body, Some(ResolveRequest::default()))?;
    let detail = match req.verified_fixed_sha256.as_deref() {
        Some(sha) => {
            crate::evidence::validate_sha256(sha)
                .map_err(|e| ApiError::bad_request(format!("verified_fixed_sha256: {e}")))?;
            if s.store.evidence(sha).await?.is_none() {
                return Err(ApiError::not_found(format!("evidence {sha}")));
            }
            Some(serde_json::json!({ "verified_fixed_sha256": sha }))
        }
        None => None,
    };
    act(&s, &p, &id, AlertEventKind::Resolve, req.note, detail).await
}

/// Opens an acknowledged or resolved alert again.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/reopen",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    request_body(content = Option<NoteRequest>, description = "Optional: a note"),
    responses(
        (status = 200, description = "The alert as it now is", body = AlertView),
        (status = 400, description = "An invalid id or body", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the operator role, or a cookie session without X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 409, description = "The alert is open", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "A body without a JSON content type", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn reopen(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AlertView>, ApiError> {
    p.require(Role::Operator)?;
    let req = action_body(&headers, body, Some(NoteRequest::default()))?;
    act(&s, &p, &id, AlertEventKind::Reopen, req.note, None).await
}

/// Adds a note to an alert's trail (any status).
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/comment",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    request_body = CommentRequest,
    responses(
        (status = 200, description = "The alert (its status unchanged)", body = AlertView),
        (status = 400, description = "An invalid id, no body, or an empty note", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the operator role, or a cookie session without X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "A body without a JSON content type", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn comment(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AlertView>, ApiError> {
    p.require(Role::Operator)?;
    let req: CommentRequest = action_body(&headers, body, None)?;
    if req.note.is_empty() {
        return Err(ApiError::bad_request("a comment needs a note"));
    }
    act(&s, &p, &id, AlertEventKind::Comment, Some(req.note), None).await
}

/// Assigns an alert to someone (any status).
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/assign",
    tag = "alerts",
    params(("id" = Uuid, Path, description = "Alert id")),
    request_body = AssignRequest,
    responses(
        (status = 200, description = "The alert (its status unchanged)", body = AlertView),
        (status = 400, description = "An invalid id, no body, or an invalid assignee", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the operator role, or a cookie session without X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "A body without a JSON content type", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn assign(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AlertView>, ApiError> {
    p.require(Role::Operator)?;
    let req: AssignRequest = action_body(&headers, body, None)?;
    let n = req.assignee.chars().count();
    if n == 0 || n > MAX_ASSIGNEE_CHARS {
        return Err(ApiError::bad_request(format!(
            "an assignee is 1 to {MAX_ASSIGNEE_CHARS} characters"
        )));
    }
    let detail = serde_json::json!({ "assignee": req.assignee });
    act(&s, &p, &id, AlertEventKind::Assign, req.note, Some(detail)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_enums_list_exactly_the_store_values() {
        for v in AlertStatus::NAMES {
            assert_eq!(AlertStatus::parse(v).unwrap().as_str(), *v);
        }
        for s in [
            AlertStatus::Open,
            AlertStatus::Acknowledged,
            AlertStatus::Resolved,
        ] {
            assert!(AlertStatus::NAMES.contains(&s.as_str()));
        }
        for v in AlertEventKind::NAMES {
            assert_eq!(AlertEventKind::parse(v).unwrap().as_str(), *v);
        }
        assert_eq!(AlertEventKind::NAMES.len(), 5);
    }

    #[test]
    fn an_empty_body_is_the_default_only_where_one_is_optional() {
        let json = {
            let mut h = HeaderMap::new();
            h.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
            h
        };
        let none = HeaderMap::new();
        let n: NoteRequest =
            action_body(&none, Ok(Bytes::new()), Some(NoteRequest::default())).unwrap();
        assert!(n.note.is_none());
        assert!(action_body::<CommentRequest>(&none, Ok(Bytes::new()), None).is_err());
        assert!(
            action_body::<NoteRequest>(&json, Ok(Bytes::from_static(b"{\"x\":1}")), None).is_err()
        );
        // A struct is not read from an array of its fields.
        assert!(
            action_body::<NoteRequest>(&json, Ok(Bytes::from_static(b"[null]")), None).is_err()
        );
        let n: NoteRequest = action_body(
            &json,
            Ok(Bytes::from_static(b"null")),
            Some(NoteRequest::default()),
        )
        .unwrap();
        assert!(n.note.is_none());
        // A body without a JSON type: 415.
        let e = action_body::<NoteRequest>(&none, Ok(Bytes::from_static(b"{}")), None).unwrap_err();
        assert_eq!(e.code, super::super::error::ErrorCode::UnsupportedMediaType);
    }
}
