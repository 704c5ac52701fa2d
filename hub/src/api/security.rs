//! A person's own account security, and an admin's help with someone else's: changing
//! one's password, one-time reset links, sessions seen and ended, a personal-data export.
//!
//! | endpoint | who |
//! |---|---|
//! | `POST /api/v1/me/password` (`current_password`, `new_password`) | a signed-in user (not a token) |
//! | `GET /api/v1/me/sessions`, `DELETE /api/v1/me/sessions/{id}` | a signed-in user |
//! | `GET /api/v1/users/{id}/sessions`, `DELETE /api/v1/users/{id}/sessions` | admin |
//! | `POST /api/v1/users/{id}/reset-link` | admin |
//! | `POST /api/v1/auth/reset` (`token`, `new_password`) | anyone with a link |
//! | `GET /api/v1/users/{id}/export` | admin |
//!
//! A new password (changed or reset) ends every other session of the account; a reset
//! link is shown once, kept only as its SHA-256, works once, for
//! [`RESET_LINK_LIFETIME_HOURS`], and not for a disabled account. Wrong current
//! passwords and unknown reset tokens count against the sign-in limits. Everything is
//! audited.

use super::accounts::{parse_uuid, validate_new_user, UserView, MAX_PASSWORD_CHARS};
use super::auth::{new_token, token_hash, Principal};
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::{audit, ApiJson, ApiState, ClientAddr, ListPage};
use crate::credentials::{hash_password, verify_password};
use crate::store::{
    AccountStore, AlertStore, AuditEvent, AuditLog, AuditQuery, Role, SessionRecord,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// How long a reset link works.
pub const RESET_LINK_LIFETIME_HOURS: i64 = 24;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(change_password))
        .routes(routes!(my_sessions))
        .routes(routes!(end_my_session))
        .routes(routes!(user_sessions, end_user_sessions))
        .routes(routes!(reset_link))
        .routes(routes!(reset_password))
        .routes(routes!(export_user))
}

/// A password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    pub current_password: String,
    /// The new one (12 to 1024 characters).
    pub new_password: String,
}

fn check_new_password(username: &str, password: &str) -> Result<(), ApiError> {
    validate_new_user(username, password)
}

/// Changes the caller's password: the current one is required; every other session of
/// the account ends.
#[utoipa::path(
    post,
    path = "/api/v1/me/password",
    tag = "auth",
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; the account's other sessions are ended"),
        (status = 400, description = "A new password of the wrong length, or an unknown field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The current password is wrong, the call came with an API token, or a cookie session without X-CSRF-Token", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords; wait a minute", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn change_password(
    State(s): State<ApiState>,
    p: Principal,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let Some(session) = p.session() else {
        return Err(ApiError::forbidden(
            "a password is changed in a signed-in session, not with an API token",
        ));
    };
    if !s.logins.allowed(&p.user.username, ip) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many wrong passwords; wait a minute",
        ));
    }
    check_new_password(&p.user.username, &req.new_password)?;
    // The stored hash, not the one remembered with the session (it may be seconds old).
    let user = s
        .store
        .user(p.user.id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let hash = user.password_hash;
    let current = req.current_password.clone();
    let ok = current.chars().count() <= MAX_PASSWORD_CHARS
        && tokio::task::spawn_blocking(move || verify_password(&hash, &current))
            .await
            .unwrap_or(false);
    if !ok {
        s.logins.failed(&p.user.username, ip);
        audit(
            &s,
            &p,
            "auth.password_change_failed",
            &p.user.username,
            serde_json::json!({ "reason": "wrong current password" }),
        )
        .await?;
        return Err(ApiError::forbidden("the current password is wrong"));
    }
    let new = req.new_password.clone();
    let new_hash = tokio::task::spawn_blocking(move || hash_password(&new))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?;
    s.store
        .set_password(p.user.id, &new_hash, Some(session))
        .await?;
    s.auth_cache.clear();
    audit(
        &s,
        &p,
        "user.password",
        &p.user.username,
        serde_json::json!({ "other_sessions_ended": true }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A session as its owner or an admin sees it (never its token).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Session id.
    pub id: Uuid,
    /// When signed in.
    pub created_at: DateTime<Utc>,
    /// Last used (to within a few seconds).
    pub last_seen_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// The address it signed in from.
    pub from_address: Option<String>,
    /// Whether it is the session making this call.
    pub current: bool,
}

fn session_view(s: SessionRecord, current: Option<Uuid>) -> SessionView {
    SessionView {
        id: s.id,
        created_at: s.created_at,
        last_seen_at: s.last_seen_at,
        expires_at: s.expires_at,
        from_address: s.from_address,
        current: Some(s.id) == current,
    }
}

/// The caller's sessions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/me/sessions",
    tag = "auth",
    responses(
        (status = 200, description = "The caller's live sessions, newest first", body = ListPage<SessionView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn my_sessions(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<ListPage<SessionView>>, ApiError> {
    sessions_page(&s, p.user.id, p.session()).await
}

/// Ends one of the caller's sessions (another browser, a lost laptop).
#[utoipa::path(
    delete,
    path = "/api/v1/me/sessions/{id}",
    tag = "auth",
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 204, description = "Ended"),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "A cookie session without X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such session of the caller's", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn end_my_session(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_uuid("session", &id)?;
    if s.store.end_user_sessions(p.user.id, Some(id)).await? == 0 {
        return Err(ApiError::not_found(format!("session {id}")));
    }
    s.auth_cache.clear();
    audit(
        &s,
        &p,
        "session.end",
        &p.user.username,
        serde_json::json!({ "session": id }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn user_or_404(s: &ApiState, id: &str) -> Result<crate::store::UserRecord, ApiError> {
    let id = parse_uuid("user", id)?;
    s.store
        .user(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))
}

/// A user's sessions.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/sessions",
    tag = "admin",
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user's live sessions, newest first", body = ListPage<SessionView>),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn user_sessions(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<ListPage<SessionView>>, ApiError> {
    p.require(Role::Admin)?;
    let user = user_or_404(&s, &id).await?;
    sessions_page(&s, user.id, p.session()).await
}

/// A user's live sessions, `current` marked.
async fn sessions_page(
    s: &ApiState,
    user: Uuid,
    current: Option<Uuid>,
) -> Result<Json<ListPage<SessionView>>, ApiError> {
    let sessions = s.store.user_sessions(user, Utc::now()).await?;
    Ok(Json(ListPage::whole(
        sessions
            .into_iter()
            .map(|x| session_view(x, current))
            .collect(),
    )))
}

/// Ends every session of a user (they sign in again; tokens are revoked apart).
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}/sessions",
    tag = "admin",
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "Ended"),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn end_user_sessions(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Admin)?;
    let user = user_or_404(&s, &id).await?;
    let ended = s.store.end_user_sessions(user.id, None).await?;
    s.auth_cache.clear();
    audit(
        &s,
        &p,
        "session.end_all",
        &user.username,
        serde_json::json!({ "sessions": ended }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A reset link, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResetLink {
    /// The dashboard path to give the person (out of band): `/reset#token=…`. The token
    /// is in the fragment, so it is never sent to a server or kept in a log.
    pub path: String,
    /// The token alone (for `POST /api/v1/auth/reset`).
    pub token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Issues a one-time password reset link for a user.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/reset-link",
    tag = "admin",
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 201, description = "The link, shown this once", body = ResetLink),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "The account is disabled", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn reset_link(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ResetLink>), ApiError> {
    p.require(Role::Admin)?;
    let user = user_or_404(&s, &id).await?;
    if user.disabled_at.is_some() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "the account is disabled: enable it first",
        ));
    }
    let token = new_token("chr_")?;
    let now = Utc::now();
    let expires_at = now + chrono::Duration::hours(RESET_LINK_LIFETIME_HOURS);
    s.store
        .create_password_reset(&token_hash(&token), user.id, &p.actor(), now, expires_at)
        .await?;
    audit(
        &s,
        &p,
        "user.reset_link",
        &user.username,
        serde_json::json!({ "expires_at": expires_at }),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(ResetLink {
            path: format!("/reset#token={token}"),
            token,
            expires_at,
        }),
    ))
}

/// A password set through a reset link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// The link's token.
    pub token: String,
    /// The new password (12 to 1024 characters).
    pub new_password: String,
}

/// Sets a password with a reset link's token; every session of the account ends.
#[utoipa::path(
    post,
    path = "/api/v1/auth/reset",
    tag = "auth",
    request_body = PasswordReset,
    responses(
        (status = 204, description = "The password is set; sign in with it"),
        (status = 400, description = "A new password of the wrong length, or an unknown field", body = ErrorBody),
        (status = 401, description = "The link is unknown, used, expired, or its account disabled", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 429, description = "Too many failed attempts from this address; wait a minute", body = ErrorBody),
    ),
    security(())
)]
async fn reset_password(
    State(s): State<ApiState>,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<PasswordReset>,
) -> Result<StatusCode, ApiError> {
    // Counted per address only (a name no account can have): an unknown token from one
    // address must not lock out everyone else's links.
    let limited_as = format!(
        "\u{1}reset {}",
        ip.map(|a| a.to_string()).unwrap_or_default()
    );
    if !s.logins.allowed(&limited_as, ip) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many failed attempts; wait a minute",
        ));
    }
    if req.new_password.chars().count() < 12
        || req.new_password.chars().count() > MAX_PASSWORD_CHARS
    {
        return Err(ApiError::bad_request(format!(
            "a password has 12 to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    let new = req.new_password.clone();
    let new_hash = tokio::task::spawn_blocking(move || hash_password(&new))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?;
    let used = s
        .store
        .use_password_reset(&token_hash(req.token.trim()), Utc::now(), &new_hash)
        .await?;
    let Some(user) = used else {
        s.logins.failed(&limited_as, ip);
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "this reset link is unknown, used or expired",
        ));
    };
    s.auth_cache.clear();
    s.store
        .audit(&AuditEvent {
            at: Utc::now(),
            actor: user.username.clone(),
            action: "user.password_reset".into(),
            target: user.username.clone(),
            from_address: ip.map(|a| a.to_string()),
            detail: serde_json::json!({ "sessions_ended": true }),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Everything the hub holds about a person (GDPR access request).
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonalData {
    /// When exported.
    pub exported_at: DateTime<Utc>,
    /// The account.
    pub user: UserView,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// Live sessions (addresses, times).
    pub sessions: Vec<SessionView>,
    /// API tokens (names, scopes, times; never the tokens).
    #[schema(value_type = Vec<Object>)]
    pub tokens: Vec<serde_json::Value>,
    /// Audit entries naming the person as actor or object.
    #[schema(value_type = Vec<Object>)]
    pub audit: Vec<serde_json::Value>,
    /// Alert actions the person took.
    #[schema(value_type = Vec<Object>)]
    pub alert_actions: Vec<serde_json::Value>,
}

/// Exports a user's personal data as JSON.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/export",
    tag = "admin",
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The person's data", body = PersonalData),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn export_user(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<PersonalData>, ApiError> {
    p.require(Role::Admin)?;
    let user = user_or_404(&s, &id).await?;
    let sessions = s
        .store
        .user_sessions(user.id, Utc::now())
        .await?
        .into_iter()
        .map(|x| session_view(x, None))
        .collect();
    let tokens = s
        .store
        .list_api_tokens(user.id)
        .await?
        .into_iter()
        .map(|t| {
            serde_json::json!({
                "id": t.id, "name": t.name, "scopes": t.scopes, "created_at": t.created_at,
                "expires_at": t.expires_at, "last_used_at": t.last_used_at,
                "revoked_at": t.revoked_at,
            })
        })
        .collect();
    let mut audit_entries = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for by_actor in [true, false] {
        let mut q = AuditQuery {
            limit: crate::store::MAX_PAGE_LIMIT,
            ..AuditQuery::default()
        };
        if by_actor {
            q.actor = Some(user.username.clone());
        } else {
            q.target = Some(user.username.clone());
        }
        loop {
            let page = s.store.audit_page(&q).await?;
            for r in page.items {
                if seen.insert(r.seq) {
                    audit_entries.push(r);
                }
            }
            match page.next_cursor {
                Some(c) => q.after = Some(c),
                None => break,
            }
        }
    }
    audit_entries.sort_by_key(|r| r.seq);
    let audit = audit_entries
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "seq": r.seq, "at": r.event.at, "actor": r.event.actor,
                "action": r.event.action, "target": r.event.target,
                "from_address": r.event.from_address, "detail": r.event.detail,
            })
        })
        .collect();
    let alert_actions = s
        .store
        .alert_events_by_actor(&user.username)
        .await?
        .into_iter()
        .map(|e| {
            serde_json::json!({
                "alert": e.event.alert_id, "kind": e.event.kind.as_str(), "at": e.event.at,
                "from_address": e.event.from_address, "note": e.event.note,
                "detail": e.event.detail,
            })
        })
        .collect();
    audit_export(&s, &p, &user.username).await?;
    Ok(Json(PersonalData {
        exported_at: Utc::now(),
        user: UserView::from(&user),
        created_at: user.created_at,
        sessions,
        tokens,
        audit,
        alert_actions,
    }))
}

async fn audit_export(s: &ApiState, p: &Principal, username: &str) -> Result<(), ApiError> {
    audit(s, p, "user.export", username, serde_json::Value::Null).await
}
