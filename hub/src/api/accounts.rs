//! Accounts: signing in and out, the caller, users (admin) and API tokens (the
//! caller's own).
//!
//! | endpoint | role |
//! |---|---|
//! | `POST /api/v1/auth/login` | anyone; failures are rate-limited per name and address (429) |
//! | `POST /api/v1/auth/logout` | the caller (ends the session that authenticated it) |
//! | `GET /api/v1/me` | the caller |
//! | `GET /api/v1/users`, `POST /api/v1/users` | admin |
//! | `PATCH /api/v1/users/{id}` (role, disabled) | admin, not on their own account |
//! | `GET /api/v1/tokens`, `POST /api/v1/tokens` | the caller's own; a token cannot make tokens |
//! | `DELETE /api/v1/tokens/{id}` | the caller's own; admin: anyone's |
//!
//! User and token changes are audited (`user.add`, `user.update`, `token.add`,
//! `token.revoke`).

use super::auth::{self, new_token, token_hash, Principal, SESSION_COOKIE, SESSION_LIFETIME};
use super::error::{ApiError, ErrorBody, ErrorCode};
use super::{audit, enum_schema, ApiJson, ApiState, ClientAddr, ListPage};
use crate::credentials::{hash_password, verify_password};
use crate::store::{AccountStore, AuditLog};
use crate::store::{NewApiToken, NewSession, NewUser, Role};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Longest password accepted, in characters (argon2 hashes any length; this bounds
/// the work a request can ask for).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(list_users, add_user))
        .routes(routes!(update_user))
        .routes(routes!(pseudonymise_user))
        .routes(routes!(list_tokens, add_token))
        .routes(routes!(revoke_token))
}

fn role_schema() -> Object {
    enum_schema(
        Role::NAMES,
        false,
        "`viewer` reads, `operator` also acts on alerts and uploads, `admin` also manages",
    )
}

/// A sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// The session token, for `Authorization: Bearer` (also set as the session cookie).
    pub token: String,
    /// What a cookie session sends as `X-CSRF-Token` with every state change.
    pub csrf_token: String,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
    /// Who signed in.
    pub user: UserView,
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// User id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// Role.
    #[schema(schema_with = role_schema)]
    pub role: Role,
    /// Whether the account is disabled (it cannot sign in; its tokens do not work).
    pub disabled: bool,
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

/// An argon2id hash of a random password, made once: what an unknown user name is
/// checked against.
fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 16];
        let _ = getrandom::fill(&mut secret);
        hash_password(&hex::encode(secret)).unwrap_or_default()
    })
}

/// Signs in with a user name and password.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    description = "Makes a session: its token is returned (send it as `Authorization: Bearer`) and set as an `HttpOnly; SameSite=Strict` cookie. A cookie session must send `csrf_token` as `X-CSRF-Token` with every state change. Failed attempts are limited per user name and per client address.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; the session cookie is set too", body = LoginResponse,
            headers(("Set-Cookie" = String, description = "The session cookie"))),
        (status = 400, description = "A malformed body or an unknown field", body = ErrorBody),
        (status = 401, description = "Wrong user name or password, or a disabled account", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins for this name or address; wait a minute", body = ErrorBody),
    ),
    security(())
)]
async fn login(
    State(s): State<ApiState>,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    // A name no account can have (too long, control characters) is refused at once,
    // counted against the address (and the one shared name "") only: it costs no hash
    // and no memory, and says nothing about which names exist.
    let valid_name = crate::store::is_valid_username(&req.username);
    let limited_as = if valid_name {
        req.username.as_str()
    } else {
        ""
    };
    if !s.logins.allowed(limited_as, ip) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "too many failed sign-ins; wait a minute",
        ));
    }
    if !valid_name {
        s.logins.failed("", ip);
        audit_sign_in(&s, "auth.login_failed", "", ip, "not a possible user name").await?;
        tracing::warn!(username = ?req.username.chars().take(80).collect::<String>(),
            bytes = req.username.len(), from = ?ip, "sign-in refused: not a possible user name");
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "wrong user name or password",
        ));
    }
    // A password no account can have is refused before argon2 sees it.
    let user = if req.password.chars().count() > MAX_PASSWORD_CHARS {
        None
    } else {
        s.store.user_by_username(&req.username).await?
    };
    // The same argon2 work whether or not the name exists (a dummy hash otherwise), so
    // the answer's timing does not tell which user names are real.
    let (hash, usable) = match &user {
        Some(u) => (u.password_hash.clone(), u.disabled_at.is_none()),
        None => (dummy_password_hash().to_string(), false),
    };
    let password = req.password.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .unwrap_or(false)
        && usable;
    let why = match &user {
        None => "unknown user",
        Some(u) if u.disabled_at.is_some() => "account disabled",
        Some(_) => "wrong password",
    };
    let Some(user) = user.filter(|_| ok) else {
        s.logins.failed(&req.username, ip);
        audit_sign_in(&s, "auth.login_failed", &req.username, ip, why).await?;
        // `?`: newlines and control characters in a user name are escaped, never written
        // raw into the log (a forged "signed in" line).
        tracing::warn!(username = ?req.username, from = ?ip, "sign-in refused");
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
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
    tracing::info!(username = ?user.username, from = ?ip, "signed in");
    audit_sign_in(&s, "auth.login", &user.username, ip, "password").await?;
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

/// Records a sign-in or a refused one (the actor is the name given: nobody is signed in
/// yet).
async fn audit_sign_in(
    s: &ApiState,
    action: &str,
    username: &str,
    from: Option<std::net::IpAddr>,
    how: &str,
) -> Result<(), ApiError> {
    s.store
        .audit(&crate::store::AuditEvent {
            at: Utc::now(),
            actor: username.to_string(),
            action: action.to_string(),
            target: username.to_string(),
            from_address: from.map(|ip| ip.to_string()),
            detail: serde_json::json!({ "reason": how }),
        })
        .await?;
    Ok(())
}

/// Ends the session that authenticated the call.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    description = "Ends the session whose token (bearer or cookie) authenticated the call and clears the cookie. Called with an API token, it only clears the cookie: revoke tokens with `DELETE /api/v1/tokens/{id}`.",
    responses(
        (status = 204, description = "Signed out; the cookie is cleared",
            headers(("Set-Cookie" = String, description = "The cleared session cookie"))),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "A cookie session without its X-CSRF-Token", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
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
        .map(|t| t.trim().to_string())
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
        let hash = token_hash(&t);
        s.store.delete_session(&hash).await?;
        s.auth_cache.forget(&hash);
    }
    tracing::info!(username = ?p.user.username, "signed out");
    audit(
        &s,
        &p,
        "auth.logout",
        &p.user.username,
        serde_json::Value::Null,
    )
    .await?;
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(([(header::SET_COOKIE, clear)], StatusCode::NO_CONTENT).into_response())
}

/// Who is calling.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "auth",
    responses(
        (status = 200, description = "The caller", body = UserView),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn me(p: Principal) -> Json<UserView> {
    Json(UserView::from(&p.user))
}

/// Every user, disabled ones included, by user name.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "admin",
    responses(
        (status = 200, description = "Every user, by user name", body = ListPage<UserView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_users(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<ListPage<UserView>>, ApiError> {
    p.require(Role::Admin)?;
    let items = s
        .store
        .list_users()
        .await?
        .iter()
        .map(UserView::from)
        .collect();
    Ok(Json(ListPage::whole(items)))
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
    let chars = password.chars().count();
    if !(12..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Err(ApiError::bad_request(format!(
            "a password has 12 to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// A user to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    /// Login name: 1 to 64 of letters, digits and `. _ - @`.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    pub username: String,
    /// Password, 12 to 1024 characters.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
    /// Role.
    #[schema(schema_with = role_schema)]
    pub role: Role,
}

/// Creates a user.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "admin",
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "An invalid name, password or role, or an unknown field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 409, description = "The user name is taken", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
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
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?
        .map_err(|_| ApiError::new(ErrorCode::Internal, "internal error"))?;
    let user = s
        .store
        .add_user(&NewUser {
            username: req.username,
            password_hash: hash,
            role: req.role,
        })
        .await?;
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

fn optional_role_schema() -> Object {
    enum_schema(Role::NAMES, true, "The new role; absent or `null` keeps it")
}

/// Changes to a user; absent fields are kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// The new role.
    #[schema(schema_with = optional_role_schema)]
    pub role: Option<Role>,
    /// Disable (`true`: ends the user's sessions, stops their tokens) or enable again.
    pub disabled: Option<bool>,
}

/// Changes a user's role, or disables or enables the account.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    tag = "admin",
    params(("id" = Uuid, Path, description = "User id")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The user as they now are", body = UserView),
        (status = 400, description = "An invalid id, role or an unknown field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "An admin cannot demote or disable their own account", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_user(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    p.require(Role::Admin)?;
    let id = parse_uuid("user", &id)?;
    let before = s
        .store
        .user(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))?;
    // The last way back in must not be locked by its own holder.
    let demotes = patch.role.is_some_and(|r| r < Role::Admin);
    if id == p.user.id && (demotes || patch.disabled == Some(true)) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "an admin cannot demote or disable their own account",
        ));
    }
    // Remembered authentications carry the user's role and state: forget them all.
    if let Some(role) = patch.role {
        let found = s.store.set_user_role(id, role).await?;
        s.auth_cache.clear();
        if !found {
            return Err(ApiError::not_found(format!("user {id}")));
        }
    }
    if let Some(disabled) = patch.disabled {
        let found = s.store.set_user_disabled(id, disabled).await?;
        s.auth_cache.clear();
        if !found {
            return Err(ApiError::not_found(format!("user {id}")));
        }
    }
    let after = s
        .store
        .user(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))?;
    audit(
        &s,
        &p,
        "user.update",
        &after.username,
        serde_json::json!({
            "before": { "role": before.role, "disabled": before.disabled_at.is_some() },
            "after": { "role": after.role, "disabled": after.disabled_at.is_some() },
        }),
    )
    .await?;
    Ok(Json(UserView::from(&after)))
}

/// What pseudonymising a user changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PseudonymisedView {
    /// The account's new name, which the audit log and alert trails now show.
    pub pseudonym: String,
    /// Audit fields replaced (actor and target count apart).
    pub audit_rows: u64,
    /// Alert-trail entries whose actor was replaced.
    pub alert_events: u64,
}

/// Pseudonymises a departed (disabled) user.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/pseudonymise",
    tag = "admin",
    description = "GDPR: renames a disabled account to a pseudonym (`former-user-…`) and replaces its name in the audit log (actor and target; the addresses of its own actions are removed) and in alert trails. The audit chain stays valid: the chain holds salted digests of personal fields, and the salts of the replaced values are dropped. A `user.pseudonymise` entry announces the pseudonym. Irreversible.",
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Pseudonymised", body = PseudonymisedView),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the admin role", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "The account is not disabled", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn pseudonymise_user(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<PseudonymisedView>, ApiError> {
    p.require(Role::Admin)?;
    let id = parse_uuid("user", &id)?;
    let user = s
        .store
        .user(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id}")))?;
    if user.disabled_at.is_none() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "disable the account before pseudonymising it",
        ));
    }
    let done = s
        .store
        .pseudonymise_user(id, &p.actor(), Utc::now())
        .await?;
    s.auth_cache.clear();
    Ok(Json(PseudonymisedView {
        pseudonym: done.pseudonym,
        audit_rows: done.audit_rows,
        alert_events: done.alert_events,
    }))
}

/// A UUID from a path, or a 400 naming what it should have been.
pub(crate) fn parse_uuid(what: &str, text: &str) -> Result<Uuid, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("{what} id {text:?} is not a UUID")))
}

/// An API token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// What it is for: 1 to 64 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub name: String,
    /// What the token may do (at least one; its user's role still applies): `read`
    /// (every GET), `alerts`, `sites`, `gateways`, `uploads`, `users`. Each operation
    /// names the scope it needs (`x-chitti-scope`).
    #[schema(schema_with = scopes_schema)]
    pub scopes: Vec<String>,
    /// Days until the token stops working: 1 to `http.token_max_days` (default: that
    /// maximum; without one configured, absent means never).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub expires_in_days: Option<u32>,
}

fn scopes_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(auth::Scope::ALL.map(auth::Scope::as_str))),
        )
        .min_items(Some(1))
        .description(Some(
            "What the token may do: read, alerts, sites, gateways, uploads, users",
        ))
        .build()
}

/// The request's scopes, each known and listed once.
fn check_scopes(scopes: &[String]) -> Result<(), ApiError> {
    if scopes.is_empty() {
        return Err(ApiError::bad_request(format!(
            "a token needs at least one scope (of: {})",
            auth::scope_names()
        )));
    }
    for (i, scope) in scopes.iter().enumerate() {
        if auth::Scope::parse(scope).is_none() {
            return Err(ApiError::bad_request(format!(
                "unknown scope {scope:?} (scopes: {})",
                auth::scope_names()
            )));
        }
        if scopes[..i].contains(scope) {
            return Err(ApiError::bad_request(format!(
                "scope {scope:?} is listed twice"
            )));
        }
    }
    Ok(())
}

/// A token name: 1 to 64 characters, no control characters.
fn check_token_name(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "a token name is 1 to 64 characters without control characters",
        ));
    }
    Ok(())
}

/// An API token as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Token id.
    pub id: Uuid,
    /// What it is for.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// Whether revoked.
    pub revoked: bool,
    /// When last used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops working; absent: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Only in the answer that creates it: the token is never shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
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
            expires_at: t.expires_at,
            token: None,
        }
    }
}

/// The caller's API tokens, revoked ones included, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "auth",
    responses(
        (status = 200, description = "The caller's tokens (never the tokens themselves)", body = ListPage<TokenView>),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_tokens(
    State(s): State<ApiState>,
    p: Principal,
) -> Result<Json<ListPage<TokenView>>, ApiError> {
    let items = s
        .store
        .list_api_tokens(p.user.id)
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect();
    Ok(Json(ListPage::whole(items)))
}

/// Makes an API token for the caller, acting with the caller's role.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "auth",
    request_body = NewTokenRequest,
    responses(
        (status = 201, description = "Created; `token` is shown this once", body = TokenView),
        (status = 400, description = "An invalid name or scope, or an unknown field", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Called with an API token (only signed-in users make tokens), or a cookie session without X-CSRF-Token", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn add_token(
    State(s): State<ApiState>,
    p: Principal,
    ApiJson(req): ApiJson<NewTokenRequest>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    check_token_name(&req.name)?;
    check_scopes(&req.scopes)?;
    let max = s.token_max_days;
    let days = match (req.expires_in_days, max) {
        (Some(0), _) => return Err(ApiError::bad_request("expires_in_days must be at least 1")),
        (Some(d), m) if m > 0 && d > m => {
            return Err(ApiError::bad_request(format!(
                "expires_in_days {d} is longer than this hub allows ({m}, http.token_max_days)"
            )))
        }
        (Some(d), _) => Some(d),
        (None, 0) => None,
        (None, m) => Some(m),
    };
    let expires_at = days.map(|d| Utc::now() + chrono::Duration::days(i64::from(d)));
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
            expires_at,
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

/// Revokes an API token: the caller's own, or (admin) anyone's.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "auth",
    params(("id" = Uuid, Path, description = "Token id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "A cookie session without X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such token of the caller's (or, for an admin, at all), or already revoked", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn revoke_token(
    State(s): State<ApiState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_uuid("token", &id)?;
    let mine = s
        .store
        .list_api_tokens(p.user.id)
        .await?
        .iter()
        .any(|t| t.id == id);
    if !mine && p.user.role < Role::Admin {
        return Err(ApiError::not_found(format!("token {id}")));
    }
    let revoked = s.store.revoke_api_token(id).await?;
    // Only the hash identifies a remembered token: forget them all.
    s.auth_cache.clear();
    if !revoked {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_bounded() {
        assert!(validate_new_user("ada", "twelve chars").is_ok());
        assert!(validate_new_user("ada", "short").is_err());
        assert!(validate_new_user("ada", &"x".repeat(MAX_PASSWORD_CHARS)).is_ok());
        assert!(validate_new_user("ada", &"x".repeat(MAX_PASSWORD_CHARS + 1)).is_err());
        assert!(validate_new_user("a b", "twelve chars").is_err());
    }
}
