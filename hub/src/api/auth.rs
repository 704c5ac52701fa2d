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
//! - API tokens (`chitti_…`) are stored as SHA-256 too, shown once, revocable.
//! - Failed logins are rate-limited per user name and per client address.

use super::error::{ApiError, ErrorCode};
use super::ApiState;
use crate::store::{Role, Store, UserRecord};
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

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVia {
    /// A session cookie; state changes need this CSRF token.
    SessionCookie {
        /// The session's CSRF token.
        csrf: String,
    },
    /// A session token sent as a bearer token.
    SessionBearer,
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
                Some(Resolved::Session { user, .. }) => Ok(Self {
                    user,
                    via: AuthVia::SessionBearer,
                    from,
                }),
                Some(Resolved::ApiToken { user, name, scopes }) => Ok(Self {
                    user,
                    via: AuthVia::ApiToken { name, scopes },
                    from,
                }),
                None => Err(ApiError::unauthorized()),
            };
        }
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ApiError::unauthorized());
        };
        // A cookie is a session's, never an API token's.
        let Some(Resolved::Session { user, csrf, .. }) =
            resolve(&state, &token_hash(&token), now).await?
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
            via: AuthVia::SessionCookie { csrf },
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
                expires_at: session.expires_at,
            }
        } else if let Some((t, user)) = state.store.api_token_by_hash(hash).await? {
            Resolved::ApiToken {
                user,
                name: t.name,
                scopes: t.scopes,
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
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    ApiToken {
        user: UserRecord,
        name: String,
        scopes: Vec<String>,
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
        let fresh = at.elapsed() < self.ttl
            && !matches!(resolved, Resolved::Session { expires_at, .. } if *expires_at <= now);
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

/// Failed-login limits: at most `max_failures` per `window`, per user name and per
/// client address.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
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

    fn keys(username: &str, from: Option<IpAddr>) -> Vec<String> {
        let mut keys = vec![format!("user:{username}")];
        if let Some(ip) = from {
            keys.push(format!("ip:{ip}"));
        }
        keys
    }

    /// Whether another attempt is allowed now.
    pub fn allowed(&self, username: &str, from: Option<IpAddr>) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window;
        Self::keys(username, from).iter().all(|k| {
            let list = f.entry(k.clone()).or_default();
            list.retain(|t| t.elapsed() < window);
            list.len() < self.max_failures
        })
    }

    /// Records a failed attempt.
    pub fn failed(&self, username: &str, from: Option<IpAddr>) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for k in Self::keys(username, from) {
            f.entry(k).or_default().push(Instant::now());
        }
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
}
