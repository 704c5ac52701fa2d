//! The hub's HTTP API under `/api/v1`: JSON, every error one shape
//! (`{error: {code, message}}`, [`error`]), every caller authenticated ([`auth`]) and
//! every state change recorded with who, when and from where. The OpenAPI 3.1
//! description of all of it is served at `/api/openapi.json`, with Swagger UI at
//! `/api/docs` ([`openapi`]).
//!
//! | endpoint | role | module |
//! |---|---|---|
//! | `POST /api/v1/auth/login` | anyone (rate-limited failures) | [`accounts`] |
//! | `POST /api/v1/auth/logout`, `GET /api/v1/me` | the caller | [`accounts`] |
//! | `GET /api/v1/tokens`, `POST /api/v1/tokens` | the caller's own (a signed-in user, not a token, creates) | [`accounts`] |
//! | `DELETE /api/v1/tokens/{id}` | the caller's own; admin: anyone's | [`accounts`] |
//! | `GET /api/v1/users`, `POST /api/v1/users`, `PATCH /api/v1/users/{id}` | admin | [`accounts`] |
//! | `GET /api/v1/findings` (`?q=&track=&site=…`), `GET /api/v1/findings/{id}` | viewer | [`findings`] |
//! | `GET /api/v1/findings/{id}/thermogram.png`, `GET /api/v1/findings/{id}/temperatures` | viewer | [`evidence`] |
//! | `GET /api/v1/alerts` (`?q=&sort=&status=…`), `GET /api/v1/alerts/{id}` | viewer | [`alerts`] |
//! | `POST /api/v1/alerts/{id}/acknowledge`, `…/resolve`, `…/reopen`, `…/comment`, `…/assign` | operator | [`alerts`] |
//! | `GET /api/v1/sites`, `GET /api/v1/sites/{site}` and its `structures`, `assets` (lists and items) | viewer | [`sites`] |
//! | `POST`, `PATCH`, `DELETE` of sites, structures and assets | admin | [`sites`] |
//! | `GET /api/v1/gateways`, `GET /api/v1/gateways/{site}/{gateway}`, `GET /api/v1/cameras` | viewer | [`fleet`] |
//! | `GET /api/v1/audit` (`?actor=&action=&target=&since=&until=`), `…/export.csv` | admin | [`audit`] |
//! | `POST /api/v1/me/password`, `GET /api/v1/me/sessions`, `DELETE …/me/sessions/{id}`, `POST /api/v1/auth/reset` | the caller / anyone with a reset link | [`security`] |
//! | `GET`/`DELETE /api/v1/users/{id}/sessions`, `POST …/{id}/reset-link`, `GET …/{id}/export` | admin | [`security`] |
//! | `GET /api/v1/sites/{site}/assets/{asset}/trend` (`?since=&until=&points=`), `…/trend.csv` | viewer | [`trends`] |
//! | `GET /api/v1/retention`, `GET/POST /api/v1/retention/holds`, `POST …/holds/{id}/release` | admin | [`retention`] |
//! | `GET /api/v1/dead-letters` (`?class=&site=&gateway=&since=&until=`), `…/groups` | operator | [`dead_letters`] |
//! | `GET /api/v1/dead-letters/{id}/payload` | admin | [`dead_letters`] |
//! | `POST /api/v1/gateways/{site}/{gateway}/revoke` | admin | [`fleet`] |
//! | `GET /api/v1/gateways/{site}/{gateway}/config` | viewer | [`gateway_config`] |
//! | `PUT /api/v1/gateways/{site}/{gateway}/config`, `POST /api/v1/gateways/config-changes` | admin | [`gateway_config`] |
//! | `PUT /api/v1/evidence/{sha256}` | a gateway, by its Ed25519 signature | [`evidence`] |
//! | `GET /api/v1/evidence/{sha256}` | viewer | [`evidence`] |
//! | `POST /api/v1/uploads` | operator | [`uploads`] |
//! | `POST /api/v1/models`, `POST /api/v1/rollouts`, `POST /api/v1/rollouts/{id}/pause`, `…/resume`, `…/abort` | admin | [`models`] |
//! | `GET /api/v1/models`, `…/{id}`, `…/{id}/file` (also by download token), `GET /api/v1/model-distribution`, `GET /api/v1/rollouts`, `…/{id}` | viewer | [`models`] |
//! | `GET /api/v1/stream` (Server-Sent Events) | viewer | [`stream`] |
//! | `GET /api/v1/alerts/export.csv`, `GET /api/v1/findings/export.csv` (the lists' filters) | viewer | [`reports`] |
//! | `GET /api/v1/reports/inspection.pdf?site=&from=&to=` | viewer | [`reports`] |
//! | `GET /api/v1/evidence/{sha256}/visual.jpg` | viewer | [`reports`] |
//! | `GET /api/v1/alerts/{id}/notifications`, `GET /api/v1/notifications` | viewer | [`notifications`] |
//! | `GET /api/v1/notification-channels`, `POST …/{id}/test`, `POST …/{id}/enable` | admin | [`notifications`] |
//! | `GET /api/openapi.json`, `GET /api/docs` | anyone | [`openapi`] |
//!
//! Lists return `{items, next_cursor}` ([`ListPage`]) with keyset pagination
//! (`?after=…&limit=…`) where a list can grow without bound (findings, alerts); the
//! others are whole and their `next_cursor` is always `null`. A cursor continues only
//! the order it came from (another order's is a 400), and every row is returned exactly
//! once while new rows arrive (checked per order on both stores); `updated_desc` is the
//! exception by nature: an alert that changes while someone pages moves to the top.
//!
//! Text search (`?q=`) is a parameterised, escaped, case-insensitive substring match over
//! site, gateway, camera, asset and component class that filters along the chosen
//! order's index (a trigram index would be the next step on Postgres).
//!
//! Heavy requests (uploads, thermograms, grids, reports) take a slot of
//! `http.max_concurrent_analyses` (503 with `Retry-After` beyond); uploads parse FLIR
//! files under the `ParseLimits` of `http.max_frame_pixels` and `http.max_file_pixels`.

pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod dead_letters;
pub mod error;
pub mod evidence;
pub mod findings;
pub mod fleet;
pub mod gateway_config;
pub mod models;
pub mod notifications;
pub mod openapi;
pub mod reports;
pub mod retention;
pub mod security;
pub mod sites;
pub mod stream;
pub mod trends;
pub mod uploads;

pub use accounts::validate_new_user;
pub(crate) use alerts::AlertView;

use crate::evidence::EvidenceStore;
use crate::live::LiveEvents;
use crate::store::AnyStore;
use crate::store::AuditLog;
use auth::{LoginLimiter, Principal};
use axum::extract::{ConnectInfo, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Json, Router};
use chrono::Utc;
use error::{ApiError, ErrorCode};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

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
    /// Successful authentications, remembered briefly.
    pub auth_cache: Arc<auth::AuthCache>,
    /// Whether cookies get `Secure` (the hub is behind TLS).
    pub secure_cookies: bool,
    /// Largest multipart upload (all files together).
    pub max_upload_bytes: u64,
    /// Longest API token life, days (0: no limit; `http.token_max_days`).
    pub token_max_days: u32,
    /// What an uploaded FLIR file may make the parser do (`http.max_frame_pixels`,
    /// `http.max_file_pixels`).
    pub parse_limits: chitti_common::flir::ParseLimits,
    /// Analyses that may run at once (`http.max_concurrent_analyses`).
    pub analyses: Arc<tokio::sync::Semaphore>,
    /// The notification channels and rules (`[notifications]`).
    pub notifications: Arc<crate::notify::config::NotificationsConfig>,
    /// The dashboard's base URL, for links in test messages.
    pub dashboard_url: Option<String>,
    /// The model registry's limits and runtime (`[models]`).
    pub models: Arc<crate::config::ModelsConfig>,
    /// What is kept and for how long (`[retention]`).
    pub retention: Arc<crate::retention::RetentionConfig>,
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
            auth_cache: Arc::new(auth::AuthCache::new(auth::AUTH_CACHE_TTL)),
            secure_cookies,
            max_upload_bytes: crate::config::DEFAULT_MAX_UPLOAD_BYTES,
            token_max_days: 365,
            parse_limits: chitti_common::flir::ParseLimits {
                max_file_pixels: 64 * chitti_common::flir::DEFAULT_MAX_FRAME_PIXELS,
                ..chitti_common::flir::ParseLimits::default()
            },
            analyses: Arc::new(tokio::sync::Semaphore::new(4)),
            notifications: Arc::default(),
            dashboard_url: None,
            models: Arc::default(),
            retention: Arc::default(),
        }
    }

    /// The same state with these model-registry settings.
    pub fn with_models(mut self, models: crate::config::ModelsConfig) -> Self {
        self.models = Arc::new(models);
        self
    }

    /// The same state with this retention policy.
    pub fn with_retention(mut self, retention: crate::retention::RetentionConfig) -> Self {
        self.retention = Arc::new(retention);
        self
    }

    /// The same state with these notification channels and rules.
    pub fn with_notifications(
        mut self,
        config: Arc<crate::notify::config::NotificationsConfig>,
        dashboard_url: Option<String>,
    ) -> Self {
        self.notifications = config;
        self.dashboard_url = dashboard_url;
        self
    }

    /// The same state with other analysis limits: pixels per frame and per file, and
    /// analyses at once.
    pub fn with_analysis_limits(
        mut self,
        max_frame_pixels: u64,
        max_file_pixels: u64,
        concurrent: usize,
    ) -> Self {
        self.parse_limits.max_frame_pixels = max_frame_pixels;
        self.parse_limits.max_file_pixels = max_file_pixels;
        self.analyses = Arc::new(tokio::sync::Semaphore::new(concurrent.max(1)));
        self
    }

    /// A slot for one analysis (an upload, a thermogram, a grid, a report), held while
    /// it runs; 503 with `Retry-After` when all are busy, so a burst of heavy requests
    /// queues at the client instead of in the hub's memory.
    pub fn analysis_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.analyses).try_acquire_owned().map_err(|_| {
            ApiError::new(
                ErrorCode::Unavailable,
                "every analysis slot is busy (http.max_concurrent_analyses); retry shortly",
            )
        })
    }

    /// The same state with another longest API token life (days; 0: no limit).
    pub fn with_token_max_days(mut self, days: u32) -> Self {
        self.token_max_days = days;
        self
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
        .merge(accounts::routes())
        .merge(findings::routes())
        .merge(alerts::routes())
        .merge(sites::routes())
        .merge(fleet::routes())
        .merge(dead_letters::routes())
        .merge(audit::routes())
        .merge(retention::routes())
        .merge(security::routes())
        .merge(trends::routes())
        .merge(evidence::routes())
        .merge(uploads::routes())
        .merge(stream::routes())
        .merge(reports::routes())
        .merge(notifications::routes())
        .merge(gateway_config::routes())
        .merge(models::routes())
        .split_for_parts();
    api.merge(openapi::docs(doc))
        .fallback(|| async { ApiError::not_found("endpoint") })
        .with_state(state)
}

/// A JSON object body, with the API's error shape when it cannot be read: 413 when it
/// is larger than the body limit, 415 without a JSON content type, else 400.
pub struct ApiJson<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) => json_object(v).map(Self),
            Err(rejection) => Err(json_rejection(rejection.status(), rejection.body_text())),
        }
    }
}

/// A body's value as `T`, which must be a JSON object: serde would also read a struct
/// from an array of its fields (`[null, null]`), which no client means.
pub(crate) fn json_object<T: serde::de::DeserializeOwned>(
    v: serde_json::Value,
) -> Result<T, ApiError> {
    if !v.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// The version an edit is based on, from `If-Match` (`"3"`, or `W/"3"`); `get` names the
/// request that gives the ETag, for the 428 without one.
pub(crate) fn if_match(headers: &axum::http::HeaderMap, get: &str) -> Result<i64, ApiError> {
    let value = headers.get(axum::http::header::IF_MATCH).ok_or_else(|| {
        ApiError::new(
            error::ErrorCode::PreconditionRequired,
            format!("send If-Match with the ETag of the version you edited ({get} gives it; \"0\" before the first edit)"),
        )
    })?;
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::bad_request("If-Match: expected a version ETag such as \"3\""))
}

/// `body` answered with `version` as its quoted `ETag`.
pub(crate) fn with_etag(version: i64, body: impl IntoResponse) -> axum::response::Response {
    let etag = axum::http::HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static("\"0\""));
    ([(axum::http::header::ETAG, etag)], body).into_response()
}

/// A body that could not be read, by the status axum gave it.
pub(crate) fn json_rejection(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the body is larger than this endpoint accepts",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON, with Content-Type: application/json",
        ),
        _ => ApiError::bad_request(text),
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

/// A page of a list: the API's one list shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListPage<T: ToSchema> {
    /// The rows.
    pub items: Vec<T>,
    /// Where the next page starts (`?after=`); `null` on the last page, and always
    /// for the lists that are whole.
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> ListPage<T> {
    /// A list that is all there is.
    pub fn whole(items: Vec<T>) -> Self {
        Self {
            items,
            next_cursor: None,
        }
    }

    /// A page of the store's, its rows shown as `view` shows them.
    pub(crate) fn of<R>(page: crate::store::Page<R>, view: impl FnMut(R) -> T) -> Self {
        Self {
            items: page.items.into_iter().map(view).collect(),
            next_cursor: page.next_cursor.map(|c| c.to_string()),
        }
    }
}

/// A `?after=` cursor, or a 400; an empty one is the first page.
pub(crate) fn parse_cursor(
    after: &Option<String>,
) -> Result<Option<crate::store::Cursor>, ApiError> {
    after
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(crate::store::Cursor::parse)
        .transpose()
        .map_err(|_| ApiError::bad_request("invalid pagination cursor"))
}

/// The schema of a string enum whose values are listed (the store's enums carry serde
/// but no schema; their `NAMES` list every value, so the two cannot drift apart);
/// `nullable` also allows `null`.
pub(crate) fn enum_schema(values: &[&str], nullable: bool, description: &str) -> Object {
    let schema_type = if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    };
    let mut enum_values: Vec<serde_json::Value> = values.iter().map(|v| (*v).into()).collect();
    if nullable {
        enum_values.push(serde_json::Value::Null);
    }
    ObjectBuilder::new()
        .schema_type(schema_type)
        .enum_values(Some(enum_values))
        .description(Some(description))
        .build()
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
