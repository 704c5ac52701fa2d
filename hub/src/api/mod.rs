//! The hub's HTTP API under `/api/v1`: JSON, every error one shape
//! (`{error: {code, message}}`, [`error`]), every caller authenticated ([`auth`]) and
//! every state change recorded with who, when and from where.
//!
//! | endpoint | role |
//! |---|---|
//! | `POST /api/v1/auth/login`, `POST /api/v1/auth/logout`, `GET /api/v1/me` | anyone / the caller |
//! | `GET /api/v1/findings`, `GET /api/v1/findings/{id}` | viewer |
//! | `GET /api/v1/alerts`, `GET /api/v1/alerts/{id}` | viewer |
//! | `POST /api/v1/alerts/{id}/{acknowledge,resolve,reopen,comment,assign}` | operator |
//! | `GET /api/v1/gateways` | viewer |
//! | `GET/POST /api/v1/users`, `PATCH /api/v1/users/{id}` | admin |
//! | `GET/POST /api/v1/tokens`, `DELETE /api/v1/tokens/{id}` | the caller's own |
//!
//! Lists return `{items, next_cursor}` with keyset pagination (`?after=…&limit=…`).

pub mod auth;
pub mod error;
pub mod evidence;
pub mod fleet;
pub mod openapi;
pub mod sites;
pub mod stream;
pub mod uploads;

use crate::credentials::{hash_password, verify_password};
use crate::evidence::EvidenceStore;
use crate::live::LiveEvents;
use crate::store::{
    AlertEventKind, AlertQuery, AlertStatus, AnyStore, FindingQuery, NewAlertEvent, NewApiToken,
    NewSession, NewUser, Role, Store,
};
use auth::{new_token, token_hash, LoginLimiter, Principal, SESSION_COOKIE, SESSION_LIFETIME};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use error::ApiError;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub store: Arc<AnyStore>,
    /// Evidence blobs (content-addressed).
    pub evidence: Arc<EvidenceStore>,
    /// Alert and gateway changes, for the live stream.
    pub live: Arc<LiveEvents>,
    /// Failed-login limits.
    pub logins: Arc<LoginLimiter>,
    /// Whether cookies get `Secure` (the hub is behind TLS).
    pub secure_cookies: bool,
    /// Largest multipart upload (all files together).
    pub max_upload_bytes: u64,
}

impl ApiState {
    /// State over a store, with the default login limits (10 failures a minute), an
    /// in-memory evidence store (replace it with [`ApiState::with_evidence`]) and its own
    /// live-event hub (replace it with [`ApiState::with_live`]).
    pub fn new(store: Arc<AnyStore>, secure_cookies: bool) -> Self {
        Self {
            store,
            evidence: Arc::new(EvidenceStore::in_memory(
                crate::config::DEFAULT_EVIDENCE_MAX_BYTES,
            )),
            live: Arc::new(LiveEvents::new(crate::live::DEFAULT_LIVE_HISTORY)),
            logins: Arc::new(LoginLimiter::new(10, std::time::Duration::from_secs(60))),
            secure_cookies,
            max_upload_bytes: crate::config::DEFAULT_MAX_UPLOAD_BYTES,
        }
    }

    /// The same state with another upload limit.
    pub fn with_max_upload_bytes(mut self, bytes: u64) -> Self {
        self.max_upload_bytes = bytes;
        self
    }

    /// The same state over this evidence store.
    pub fn with_evidence(mut self, evidence: Arc<EvidenceStore>) -> Self {
        self.evidence = evidence;
        self
    }

    /// The same state publishing to (and streaming from) this live-event hub.
    pub fn with_live(mut self, live: Arc<LiveEvents>) -> Self {
        self.live = live;
        self
    }
}

/// The `/api/v1` router, with `/api/openapi.json` and `/api/docs` describing it.
pub fn router(state: ApiState) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(openapi::base())
        .merge(sites::routes())
        .merge(fleet::routes())
        .merge(evidence::routes())
        .merge(uploads::routes())
        .merge(stream::routes())
        .merge(core_routes())
        .split_for_parts();
    api.merge(openapi::docs(doc))
        .fallback(|| async { ApiError::not_found("endpoint") })
        .with_state(state)
}

/// Accounts, findings, alerts, gateways, users and tokens.
fn core_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/findings", get(list_findings))
        .route("/api/v1/findings/{id}", get(finding))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/{id}", get(alert))
        .route("/api/v1/alerts/{id}/{action}", post(alert_action))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/tokens", get(list_tokens).post(add_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(revoke_token))
}

/// A JSON body, with the API's error shape when it does not parse.
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

/// Query parameters, with the API's error shape when they do not parse.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::bad_request(rejection.body_text())),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Debug, Serialize)]
struct LoginResponse {
    token: String,
    csrf_token: String,
    expires_at: DateTime<Utc>,
    user: UserView,
}

#[derive(Debug, Serialize)]
struct UserView {
    id: Uuid,
    username: String,
    role: Role,
    disabled: bool,
}

impl From<&crate::store::UserRecord> for UserView {
    fn from(u: &crate::store::UserRecord) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            role: u.role,
            disabled: u.disabled_at.is_some(),
        }
    }
}

/// The client's address, when the server recorded it (never fails).
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

async fn login(
    State(s): State<ApiState>,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    if !s.logins.allowed(&req.username, ip) {
        return Err(ApiError::new(
            error::ErrorCode::RateLimited,
            "too many failed sign-ins; wait a minute",
        ));
    }
    let user = s.store.user_by_username(&req.username).await?;
    let ok = match &user {
        Some(u) if u.disabled_at.is_none() => {
            let (hash, password) = (u.password_hash.clone(), req.password.clone());
            tokio::task::spawn_blocking(move || verify_password(&hash, &password))
                .await
                .unwrap_or(false)
        }
        _ => false,
    };
    let Some(user) = user.filter(|_| ok) else {
        s.logins.failed(&req.username, ip);
        tracing::warn!(username = %req.username, from = ?ip, "sign-in refused");
        return Err(ApiError::new(
            error::ErrorCode::Unauthorized,
            "wrong user name or password",
        ));
    };
    let token = new_token("chs_")?;
    let csrf = new_token("")?;
    let now = Utc::now();
    let expires_at = now + chrono::Duration::from_std(SESSION_LIFETIME).unwrap_or_default();
    s.store
        .create_session(&NewSession {
            token_hash: token_hash(&token),
            user_id: user.id,
            csrf_token: csrf.clone(),
            created_at: now,
            expires_at,
            from_address: ip.map(|i| i.to_string()),
        })
        .await?;
    tracing::info!(username = %user.username, from = ?ip, "signed in");
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if s.secure_cookies { "; Secure" } else { "" }
    );
    let body = LoginResponse {
        token,
        csrf_token: csrf,
        expires_at,
        user: UserView::from(&user),
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

async fn logout(
    State(s): State<ApiState>,
    p: Principal,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // The token is the cookie's or the bearer's, whichever authenticated the call.
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| {
            headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == SESSION_COOKIE)
                .map(|(_, v)| v.to_string())
        });
    if let Some(t) = token {
        s.store.delete_session(&token_hash(&t)).await?;
    }
    tracing::info!(username = %p.user.username, "signed out");
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(([(header::SET_COOKIE, clear)], StatusCode::NO_CONTENT).into_response())
}

async fn me(p: Principal) -> Json<UserView> {
    Json(UserView::from(&p.user))
}

/// A page of a list.
#[derive(Debug, Serialize)]
pub(crate) struct PageView<T> {
    /// The rows.
    pub items: Vec<T>,
    /// Where the next page starts (`?after=`); `null` on the last page.
    pub next_cursor: Option<String>,
}

pub(crate) fn parse_cursor(
    after: &Option<String>,
) -> Result<Option<crate::store::Cursor>, ApiError> {
    after
        .as_deref()
        .map(crate::store::Cursor::parse)
        .transpose()
        .map_err(|_| ApiError::bad_request("invalid pagination cursor"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingParams {
    site: Option<String>,
    gateway: Option<String>,
    camera: Option<String>,
    asset: Option<String>,
    min_level: Option<u8>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    component_class: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// A finding as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct FindingView {
    /// When the hub received it.
    pub received_at: DateTime<Utc>,
    /// The finding as reported.
    #[serde(flatten)]
    pub finding: chitti_common::finding::Finding,
}

async fn list_findings(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<FindingParams>,
) -> Result<Json<PageView<FindingView>>, ApiError> {
    p.require(Role::Viewer)?;
    let query = FindingQuery {
        site: q.site,
        gateway: q.gateway,
        camera: q.camera,
        asset: q.asset,
        min_level: q.min_level,
        since: q.since,
        until: q.until,
        component_class: q.component_class,
        limit: q.limit.unwrap_or(crate::store::DEFAULT_PAGE_LIMIT),
        after: parse_cursor(&q.after)?,
    };
    let page = s.store.list_findings(&query).await?;
    Ok(Json(PageView {
        items: page
            .items
            .into_iter()
            .map(|f| FindingView {
                received_at: f.received_at,
                finding: f.finding,
            })
            .collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

async fn finding(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<FindingView>, ApiError> {
    p.require(Role::Viewer)?;
    let f = s
        .store
        .finding(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("finding {id}")))?;
    Ok(Json(FindingView {
        received_at: f.received_at,
        finding: f.finding,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertParams {
    site: Option<String>,
    gateway: Option<String>,
    asset: Option<String>,
    status: Option<String>,
    min_level: Option<u8>,
    limit: Option<u32>,
    after: Option<String>,
}

/// An alert as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct AlertView {
    id: Uuid,
    site: String,
    gateway: String,
    camera: String,
    track_id: Uuid,
    asset: Option<String>,
    component_class: Option<String>,
    severity_table: String,
    status: &'static str,
    worst_level: u8,
    worst_max_c: f64,
    last_level: u8,
    last_max_c: f64,
    first_finding_at: DateTime<Utc>,
    last_finding_at: DateTime<Utc>,
    finding_count: u64,
    cleared_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<crate::store::AlertRecord> for AlertView {
    fn from(a: crate::store::AlertRecord) -> Self {
        Self {
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
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

fn parse_status(s: &str) -> Result<AlertStatus, ApiError> {
    match s {
        "open" => Ok(AlertStatus::Open),
        "acknowledged" => Ok(AlertStatus::Acknowledged),
        "resolved" => Ok(AlertStatus::Resolved),
        other => Err(ApiError::bad_request(format!(
            "status {other:?}: expected open, acknowledged or resolved"
        ))),
    }
}

async fn list_alerts(
    State(s): State<ApiState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AlertParams>,
) -> Result<Json<PageView<AlertView>>, ApiError> {
    p.require(Role::Viewer)?;
    let query = AlertQuery {
        site: q.site,
        gateway: q.gateway,
        asset: q.asset,
        status: q.status.as_deref().map(parse_status).transpose()?,
        min_level: q.min_level,
        limit: q.limit.unwrap_or(crate::store::DEFAULT_PAGE_LIMIT),
        after: parse_cursor(&q.after)?,
    };
    let page = s.store.list_alerts(&query).await?;
    Ok(Json(PageView {
        items: page.items.into_iter().map(AlertView::from).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

#[derive(Debug, Serialize)]
struct AlertEventView {
    id: i64,
    kind: &'static str,
    actor: String,
    at: DateTime<Utc>,
    from_address: Option<String>,
    note: Option<String>,
    detail: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct AlertDetail {
    #[serde(flatten)]
    alert: AlertView,
    events: Vec<AlertEventView>,
    /// The track's findings, oldest first: °C and level over time.
    history: Vec<HistoryPoint>,
}

#[derive(Debug, Serialize)]
struct HistoryPoint {
    finding_id: Uuid,
    observed_at: DateTime<Utc>,
    state: chitti_common::finding::TrackState,
    level: u8,
    max_c: f64,
    delta_c: Option<f64>,
}

async fn alert(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<Json<AlertDetail>, ApiError> {
    p.require(Role::Viewer)?;
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
    // The track's findings (same site, gateway, camera; bounded).
    let mut history = Vec::new();
    let mut query = FindingQuery {
        site: Some(a.site.clone()),
        gateway: Some(a.gateway.clone()),
        camera: Some(a.camera.clone()),
        limit: crate::store::MAX_PAGE_LIMIT,
        ..FindingQuery::default()
    };
    for _ in 0..10 {
        let page = s.store.list_findings(&query).await?;
        history.extend(
            page.items
                .into_iter()
                .filter(|f| f.finding.track.id == a.track_id)
                .map(|f| HistoryPoint {
                    finding_id: f.finding.id,
                    observed_at: f.finding.observed_at,
                    state: f.finding.track.state,
                    level: f.finding.severity.level,
                    max_c: f.finding.hotspot.max_c,
                    delta_c: f.finding.severity.inputs.delta_c,
                }),
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionRequest {
    /// Why (required for `comment`; kept with every action).
    note: Option<String>,
    /// Who (for `assign`).
    assignee: Option<String>,
    /// For `resolve`: the SHA-256 of "verified fixed" evidence already on the hub (an
    /// upload's file, or a gateway's evidence after the repair).
    verified_fixed_sha256: Option<String>,
}

async fn alert_action(
    State(s): State<ApiState>,
    p: Principal,
    Path((id, action)): Path<(Uuid, String)>,
    body: axum::body::Bytes,
) -> Result<Json<AlertView>, ApiError> {
    p.require(Role::Operator)?;
    let kind = match action.as_str() {
        "acknowledge" => AlertEventKind::Acknowledge,
        "resolve" => AlertEventKind::Resolve,
        "reopen" => AlertEventKind::Reopen,
        "comment" => AlertEventKind::Comment,
        "assign" => AlertEventKind::Assign,
        other => return Err(ApiError::not_found(format!("alert action {other:?}"))),
    };
    // The body is optional (acknowledge needs none).
    let req: ActionRequest = if body.is_empty() {
        ActionRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?
    };
    if let Some(n) = &req.note {
        if n.len() > 4000 {
            return Err(ApiError::bad_request("note longer than 4000 bytes"));
        }
    }
    let detail = match kind {
        AlertEventKind::Assign => {
            let who = req
                .assignee
                .ok_or_else(|| ApiError::bad_request("assign needs an assignee"))?;
            Some(serde_json::json!({ "assignee": who }))
        }
        AlertEventKind::Comment if req.note.as_deref().is_none_or(str::is_empty) => {
            return Err(ApiError::bad_request("a comment needs a note"))
        }
        AlertEventKind::Resolve if req.verified_fixed_sha256.is_some() => {
            let sha = req.verified_fixed_sha256.as_deref().unwrap_or_default();
            crate::evidence::validate_sha256(sha)
                .map_err(|e| ApiError::bad_request(format!("verified_fixed_sha256: {e}")))?;
            if s.store.evidence(sha).await?.is_none() {
                return Err(ApiError::not_found(format!("evidence {sha}")));
            }
            Some(serde_json::json!({ "verified_fixed_sha256": sha }))
        }
        _ if req.verified_fixed_sha256.is_some() => {
            return Err(ApiError::bad_request(
                "verified_fixed_sha256 goes with resolve only",
            ))
        }
        _ => None,
    };
    let updated = s
        .store
        .record_alert_event(&NewAlertEvent {
            alert_id: id,
            kind,
            actor: p.actor(),
            at: Utc::now(),
            from_address: p.from.clone(),
            note: req.note,
            detail,
        })
        .await?;
    tracing::info!(alert = %id, action = kind.as_str(), actor = %p.actor(), "alert action");
    s.live.alerts_changed(vec![id]);
    Ok(Json(AlertView::from(updated)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserRequest {
    username: String,
    password: String,
    role: Role,
}

async fn list_users(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<PageView<UserView>>, ApiError> {
    p.require(Role::Admin)?;
    let items = s
        .store
        .list_users()
        .await?
        .iter()
        .map(UserView::from)
        .collect();
    Ok(Json(PageView {
        items,
        next_cursor: None,
    }))
}

/// Checks a new user's name and password.
pub fn validate_new_user(username: &str, password: &str) -> Result<(), ApiError> {
    if username.is_empty()
        || username.len() > 64
        || !username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
    {
        return Err(ApiError::bad_request(
            "a user name is 1 to 64 characters of letters, digits and . _ - @",
        ));
    }
    if password.chars().count() < 12 {
        return Err(ApiError::bad_request(
            "a password has at least 12 characters",
        ));
    }
    Ok(())
}

async fn add_user(
    State(s): State<ApiState>,
    p: Principal,
    ApiJson(req): ApiJson<NewUserRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    p.require(Role::Admin)?;
    validate_new_user(&req.username, &req.password)?;
    let password = req.password;
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|_| ApiError::new(error::ErrorCode::Internal, "internal error"))?
        .map_err(|_| ApiError::new(error::ErrorCode::Internal, "internal error"))?;
    let user = s
        .store
        .add_user(&NewUser {
            username: req.username,
            password_hash: hash,
            role: req.role,
        })
        .await
        .map_err(|e| match e {
            crate::store::StoreError::UserExists { .. } => {
                ApiError::new(error::ErrorCode::Conflict, e.to_string())
            }
            other => other.into(),
        })?;
    audit(
        &s,
        &p,
        "user.add",
        &user.username,
        serde_json::json!({ "role": user.role }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenRequest {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct TokenView {
    id: Uuid,
    name: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    revoked: bool,
    last_used_at: Option<DateTime<Utc>>,
    /// Only in the answer that creates it: the token is never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<crate::store::ApiTokenRecord> for TokenView {
    fn from(t: crate::store::ApiTokenRecord) -> Self {
        Self {
            id: t.id,
            name: t.name,
            scopes: t.scopes,
            created_at: t.created_at,
            revoked: t.revoked_at.is_some(),
            last_used_at: t.last_used_at,
            token: None,
        }
    }
}

async fn list_tokens(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<PageView<TokenView>>, ApiError> {
    let items = s
        .store
        .list_api_tokens(p.user.id)
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect();
    Ok(Json(PageView {
        items,
        next_cursor: None,
    }))
}

async fn add_token(
    State(s): State<ApiState>,
    p: Principal,
    ApiJson(req): ApiJson<NewTokenRequest>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    if req.name.is_empty() || req.name.len() > 64 {
        return Err(ApiError::bad_request("a token name is 1 to 64 characters"));
    }
    if matches!(p.via, auth::AuthVia::ApiToken { .. }) {
        return Err(ApiError::forbidden(
            "tokens are made by signed-in users, not by tokens",
        ));
    }
    let token = new_token("chitti_")?;
    let record = s
        .store
        .create_api_token(&NewApiToken {
            token_hash: token_hash(&token),
            user_id: p.user.id,
            name: req.name,
            scopes: req.scopes,
        })
        .await?;
    audit(
        &s,
        &p,
        "token.add",
        &record.name,
        serde_json::json!({ "id": record.id }),
    )
    .await?;
    let mut view = TokenView::from(record);
    view.token = Some(token);
    Ok((StatusCode::CREATED, Json(view)))
}

async fn revoke_token(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mine = s
        .store
        .list_api_tokens(p.user.id)
        .await?
        .iter()
        .any(|t| t.id == id);
    if !mine && p.user.role < Role::Admin {
        return Err(ApiError::not_found(format!("token {id}")));
    }
    if !s.store.revoke_api_token(id).await? {
        return Err(ApiError::not_found(format!("token {id}")));
    }
    audit(
        &s,
        &p,
        "token.revoke",
        &id.to_string(),
        serde_json::Value::Null,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Records a state change in the audit log, as the caller.
pub(crate) async fn audit(
    s: &ApiState,
    p: &Principal,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    s.store
        .audit(&crate::store::AuditEvent {
            at: Utc::now(),
            actor: p.actor(),
            action: action.to_string(),
            target: target.to_string(),
            from_address: p.from.clone(),
            detail,
        })
        .await?;
    Ok(())
}
