//! Who is calling: a session (cookie or bearer) or an API token, and what their role
//! allows.
//!
//! - `POST /api/v1/auth/login` checks the password (argon2id, off the async workers),
//!   makes a session — a random 256-bit token, stored only as its SHA-256 — and sets it
//!   as an `HttpOnly; SameSite=Strict` cookie (`Secure` behind TLS), returning it too
//!   (`{token}`) for API clients to send as `Authorization: Bearer`.
//! - A request authenticated by the **cookie** that changes state must carry the
//!   session's CSRF token in `X-CSRF-Token` (a cross-site page cannot read it); bearer
//!   requests need none (a browser never adds them by itself).
//! - API tokens (`chitti_…`) are stored as SHA-256 too, shown once, revocable, and
//!   optionally expiring. A token acts with its user's role **and** only within its
//!   [`Scope`]s: each operation needs one scope ([`Scope::for_operation`], also in the
//!   OpenAPI document as `x-chitti-scope`); a token without it gets 403 naming it.
//!   Disabling a user revokes their tokens, so re-enabling them revives none.
//! - Failed logins are rate-limited per user name and per client address.

use super::error::{ApiError, ErrorCode};
use super::ApiState;
use crate::store::AccountStore;
use crate::store::{Role, UserRecord};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "chitti_session";
/// The CSRF header.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// SHA-256 of a token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token with a recognisable prefix.
pub fn new_token(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| ApiError::new(ErrorCode::Internal, "no randomness"))?;
    Ok(format!("{prefix}{}", hex::encode(bytes)))
}

/// What an API token may do, on top of its user's role. Sessions are not scoped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Every read (`GET`): findings, alerts, sites, fleet, evidence, exports, the stream.
    Read,
    /// Alert actions: acknowledge, assign, comment, resolve, reopen.
    Alerts,
    /// Sites, structures and assets: create, change, delete.
    Sites,
    /// Gateways: revoke, configure; models and rollouts.
    Gateways,
    /// Handheld inspections: upload.
    Uploads,
    /// Users and API tokens: create, change, disable, revoke.
    Users,
}

impl Scope {
    /// Every scope, in the order the documentation lists them.
    pub const ALL: [Scope; 6] = [
        Self::Read,
        Self::Alerts,
        Self::Sites,
        Self::Gateways,
        Self::Uploads,
        Self::Users,
    ];

    /// The scope's name, as tokens list it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Alerts => "alerts",
            Self::Sites => "sites",
            Self::Gateways => "gateways",
            Self::Uploads => "uploads",
            Self::Users => "users",
        }
    }

    /// What the scope allows, in a sentence (the dashboard's token page).
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Read => {
                "every read: findings, alerts, sites, fleet, evidence, exports, the stream"
            }
            Self::Alerts => "alert actions: acknowledge, assign, comment, resolve, reopen",
            Self::Sites => "sites, structures and assets: create, change, delete",
            Self::Gateways => "gateways, their configuration, models and rollouts",
            Self::Uploads => "handheld inspections: upload",
            Self::Users => {
                "users, tokens, holds, retention, the audit trail and anything else an admin does"
            }
        }
    }

    /// A scope by name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The scope an API token needs for `method` on `path` (the full path, from
    /// `/api/v1/`); `None` for what needs none (signing out). The one place the rule
    /// is written: the extractor enforces it and the OpenAPI document shows it.
    pub fn for_operation(method: &Method, path: &str) -> Option<Self> {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Some(Self::Read);
        }
        let rest = path
            .strip_prefix("/api/v1/")
            .unwrap_or(path)
            .trim_start_matches('/');
        let first = rest.split('/').next().unwrap_or("");
        Some(match first {
            "auth" => return None,
            "alerts" => Self::Alerts,
            "sites" => Self::Sites,
            // Gateways, their configuration, and the models rolled out to them.
            "gateways" | "models" | "rollouts" => Self::Gateways,
            "uploads" => Self::Uploads,
            // Users, tokens, and anything added later until it is given its own scope:
            // the most guarded one.
            _ => Self::Users,
        })
    }
}

/// The comma-separated names of every scope (for error messages and documentation).
pub fn scope_names() -> String {
    Scope::ALL.map(Scope::as_str).join(", ")
}

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVia {
    /// A session cookie; state changes need this CSRF token.
    SessionCookie {
        /// The session's CSRF token.
        csrf: String,
        /// The session's id.
        session: uuid::Uuid,
    },
    /// A session token sent as a bearer token.
    SessionBearer {
        /// The session's id.
        session: uuid::Uuid,
    },
    /// An API token, with its scopes.
    ApiToken {
        /// The token's name.
        name: String,
        /// Its scopes.
        scopes: Vec<String>,
    },
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user (a token acts as its user).
    pub user: UserRecord,
    /// How.
    pub via: AuthVia,
    /// The client's address, for the audit log.
    pub from: Option<String>,
}

impl Principal {
    /// Fails with 403 unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.user.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the {} role (you are {})",
                role.as_str(),
                self.user.role.as_str()
            )))
        }
    }

    /// The session that authenticated the call (`None` for an API token).
    pub fn session(&self) -> Option<uuid::Uuid> {
        match &self.via {
            AuthVia::SessionCookie { session, .. } | AuthVia::SessionBearer { session } => {
                Some(*session)
            }
            AuthVia::ApiToken { .. } => None,
        }
    }

    /// The name recorded in audit trails.
    pub fn actor(&self) -> String {
        match &self.via {
            AuthVia::ApiToken { name, .. } => format!("{} (token {name})", self.user.username),
            _ => self.user.username.clone(),
        }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn client_address(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

impl<S> FromRequestParts<S> for Principal
where
    ApiState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = ApiState::from_ref(state);
        let from = client_address(parts);
        let now = chrono::Utc::now();
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        if let Some(token) = bearer {
            let hash = token_hash(&token);
            return match resolve(&state, &hash, now).await? {
                Some(Resolved::Session { user, session, .. }) => Ok(Self {
                    user,
                    via: AuthVia::SessionBearer { session },
                    from,
                }),
                Some(Resolved::ApiToken {
                    user, name, scopes, ..
                }) => {
                    // The API router is merged, never nested: the URI is the full path.
                    if let Some(needed) = Scope::for_operation(&parts.method, parts.uri.path()) {
                        if !scopes.iter().any(|s| s == needed.as_str()) {
                            return Err(ApiError::forbidden(format!(
                                "this API token lacks the `{}` scope this operation needs \
                                 (it has: {})",
                                needed.as_str(),
                                if scopes.is_empty() {
                                    "none".to_string()
                                } else {
                                    scopes.join(", ")
                                }
                            )));
                        }
                    }
                    Ok(Self {
                        user,
                        via: AuthVia::ApiToken { name, scopes },
                        from,
                    })
                }
                None => Err(ApiError::unauthorized()),
            };
        }
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ApiError::unauthorized());
        };
        // A cookie is a session's, never an API token's.
        let Some(Resolved::Session {
            user,
            csrf,
            session,
            ..
        }) = resolve(&state, &token_hash(&token), now).await?
        else {
            return Err(ApiError::unauthorized());
        };
        let changes_state = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if changes_state {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if sent != Some(csrf.as_str()) {
                return Err(ApiError::forbidden(
                    "missing or wrong X-CSRF-Token for a cookie session",
                ));
            }
        }
        Ok(Self {
            user,
            via: AuthVia::SessionCookie { csrf, session },
            from,
        })
    }
}

/// A token hash → its session or API token: remembered, else from the store.
async fn resolve(
    state: &ApiState,
    hash: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Resolved>, ApiError> {
    if let Some(r) = state.auth_cache.get(hash, now) {
        return Ok(Some(r));
    }
    let resolved =
        if let Some((session, user)) = state.store.session_by_token_hash(hash, now).await? {
            Resolved::Session {
                user,
                csrf: session.csrf_token,
                session: session.id,
                expires_at: session.expires_at,
            }
        } else if let Some((t, user)) = state.store.api_token_by_hash(hash, now).await? {
            Resolved::ApiToken {
                user,
                name: t.name,
                scopes: t.scopes,
                expires_at: t.expires_at,
            }
        } else {
            return Ok(None);
        };
    state.auth_cache.put(hash.to_string(), resolved.clone());
    Ok(Some(resolved))
}

/// How long a successful authentication is remembered.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(5);
/// Most remembered authentications (the table is emptied when it is full).
pub const AUTH_CACHE_MAX: usize = 10_000;

/// What a token resolved to.
#[derive(Clone)]
enum Resolved {
    Session {
        user: UserRecord,
        csrf: String,
        session: uuid::Uuid,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    ApiToken {
        user: UserRecord,
        name: String,
        scopes: Vec<String>,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// Successful authentications remembered for [`AUTH_CACHE_TTL`], by token hash.
///
/// Without it every request costs a database write (the session's `last_seen_at`, the
/// token's `last_used_at`) before its own query: the API load benchmark's main cost.
/// This replica forgets a token at once on logout, and everything on a revoke, a role
/// change or a disabled account; another replica of a fleet notices within the TTL.
/// `last_seen_at`/`last_used_at` are then accurate to the TTL. Failures are never
/// remembered.
pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Resolved)>>,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AuthCache {
    /// A cache remembering for `ttl` (zero: never).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, hash: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Resolved> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (at, resolved) = entries.get(hash)?;
        let expired = match resolved {
            Resolved::Session { expires_at, .. } => *expires_at <= now,
            Resolved::ApiToken { expires_at, .. } => expires_at.is_some_and(|e| e <= now),
        };
        let fresh = at.elapsed() < self.ttl && !expired;
        if fresh {
            Some(resolved.clone())
        } else {
            entries.remove(hash);
            None
        }
    }

    fn put(&self, hash: String, resolved: Resolved) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= AUTH_CACHE_MAX {
            entries.clear();
        }
        entries.insert(hash, (Instant::now(), resolved));
    }

    /// Forgets one token (logout).
    pub fn forget(&self, token_hash: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token_hash);
    }

    /// Forgets everything (a token revoked, a role changed, an account disabled).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Remembered authentications now.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Failed-login limits, with memory bounded by construction.
///
/// - **Per user name**: at most `max_failures` failures per `window`.
/// - **Per address**: at most `max_failures × ADDRESS_FACTOR`, so one person's typos do
///   not lock out everyone behind the same proxy, while spraying many names from one
///   address is still stopped.
/// - **Bounded**: a name is kept as a 16-byte digest (a 1 MiB user name costs what a
///   short one does), nothing is stored for an attempt that did not fail, expired
///   failures are dropped, and at most [`LOGIN_LIMITER_MAX_KEYS`] names and addresses
///   are tracked (the longest-quiet one goes first).
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<LimitKey, Vec<Instant>>>,
}

/// Most user names and addresses the limiter tracks at once.
pub const LOGIN_LIMITER_MAX_KEYS: usize = 16_384;

/// How many more failures an address may have than one user name.
const ADDRESS_FACTOR: usize = 10;

/// What the limiter counts failures of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LimitKey {
    /// A user name, as the first 16 bytes of the SHA-256 of its lowercase form.
    User([u8; 16]),
    /// A client address.
    Address(IpAddr),
}

impl LoginLimiter {
    /// A limiter.
    pub fn new(max_failures: usize, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(username: &str, from: Option<IpAddr>) -> Vec<(LimitKey, usize)> {
        let digest = Sha256::digest(username.to_lowercase().as_bytes());
        let mut user = [0u8; 16];
        user.copy_from_slice(&digest[..16]);
        let mut keys = vec![(LimitKey::User(user), 1)];
        if let Some(ip) = from {
            keys.push((LimitKey::Address(ip), ADDRESS_FACTOR));
        }
        keys
    }

    /// Whether another attempt is allowed now (stores nothing).
    pub fn allowed(&self, username: &str, from: Option<IpAddr>) -> bool {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Self::keys(username, from).iter().all(|(k, factor)| {
            f.get(k).map_or(0, |list| {
                list.iter().filter(|t| t.elapsed() < self.window).count()
            }) < self.max_failures * factor
        })
    }

    /// Records a failed attempt.
    pub fn failed(&self, username: &str, from: Option<IpAddr>) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window;
        for (k, factor) in Self::keys(username, from) {
            if !f.contains_key(&k) && f.len() >= LOGIN_LIMITER_MAX_KEYS {
                f.retain(|_, list| {
                    list.retain(|t| t.elapsed() < window);
                    !list.is_empty()
                });
                if f.len() >= LOGIN_LIMITER_MAX_KEYS {
                    let quietest = f
                        .iter()
                        .min_by_key(|(_, list)| list.last().copied())
                        .map(|(k, _)| *k);
                    if let Some(q) = quietest {
                        f.remove(&q);
                    }
                }
            }
            let list = f.entry(k).or_default();
            list.retain(|t| t.elapsed() < window);
            // Only the failures that can still refuse are worth keeping.
            if list.len() >= self.max_failures * factor {
                list.remove(0);
            }
            list.push(Instant::now());
        }
    }

    /// Names and addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.failures.lock().map(|f| f.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_in: chrono::Duration) -> Resolved {
        Resolved::Session {
            user: UserRecord {
                id: uuid::Uuid::now_v7(),
                username: "vera".into(),
                password_hash: String::new(),
                role: Role::Viewer,
                created_at: chrono::Utc::now(),
                disabled_at: None,
            },
            csrf: "c".into(),
            session: uuid::Uuid::now_v7(),
            expires_at: chrono::Utc::now() + expires_in,
        }
    }

    #[test]
    fn remembered_sessions_are_forgotten_on_logout_clear_and_expiry() {
        let cache = AuthCache::new(AUTH_CACHE_TTL);
        let now = chrono::Utc::now();
        cache.put("a".into(), session(chrono::Duration::hours(1)));
        cache.put("b".into(), session(chrono::Duration::hours(1)));
        assert!(cache.get("a", now).is_some());
        cache.forget("a");
        assert!(cache.get("a", now).is_none());
        assert!(cache.get("b", now).is_some());
        cache.clear();
        assert!(cache.is_empty());
        // A session past its expiry is not served from memory, however fresh the entry.
        cache.put("c".into(), session(chrono::Duration::seconds(1)));
        assert!(cache.get("c", now + chrono::Duration::seconds(2)).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_zero_ttl_remembers_nothing_and_the_table_is_bounded() {
        let off = AuthCache::new(Duration::ZERO);
        off.put("a".into(), session(chrono::Duration::hours(1)));
        assert!(off.is_empty());
        let cache = AuthCache::new(AUTH_CACHE_TTL);
        for i in 0..AUTH_CACHE_MAX + 5 {
            cache.put(format!("t{i}"), session(chrono::Duration::hours(1)));
            assert!(cache.len() <= AUTH_CACHE_MAX);
        }
    }

    #[test]
    fn one_users_failures_do_not_lock_out_the_others_behind_the_same_address() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.allowed("olga", Some(proxy)));
            limiter.failed("olga", Some(proxy));
        }
        assert!(!limiter.allowed("olga", Some(proxy)), "olga is limited");
        assert!(!limiter.allowed("OLGA", None), "by name, whatever the case");
        assert!(limiter.allowed("vera", Some(proxy)), "vera is not");
        // Spraying names from one address is limited at ten times the per-name limit.
        for n in 0..27 {
            limiter.failed(&format!("guess-{n}"), Some(proxy));
        }
        assert!(!limiter.allowed("vera", Some(proxy)));
        assert!(limiter.allowed("vera", Some("10.9.9.9".parse().unwrap())));
    }

    #[test]
    fn memory_is_bounded_whatever_the_names() {
        let limiter = LoginLimiter::new(10, Duration::from_secs(60));
        // Checks alone store nothing.
        for n in 0..1000 {
            assert!(limiter.allowed(&format!("nobody-{n}"), None));
        }
        assert_eq!(limiter.tracked(), 0);
        // Failures under ever new, long names keep at most the cap, each a fixed size.
        let long = "x".repeat(1 << 10);
        for n in 0..LOGIN_LIMITER_MAX_KEYS + 500 {
            limiter.failed(&format!("{long}{n}"), None);
            assert!(limiter.tracked() <= LOGIN_LIMITER_MAX_KEYS);
        }
        assert_eq!(limiter.tracked(), LOGIN_LIMITER_MAX_KEYS);
    }
}
