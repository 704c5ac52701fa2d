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
            if let Some((_, user)) = state.store.session_by_token_hash(&hash, now).await? {
                return Ok(Self {
                    user,
                    via: AuthVia::SessionBearer,
                    from,
                });
            }
            if let Some((t, user)) = state.store.api_token_by_hash(&hash).await? {
                return Ok(Self {
                    user,
                    via: AuthVia::ApiToken {
                        name: t.name,
                        scopes: t.scopes,
                    },
                    from,
                });
            }
            return Err(ApiError::unauthorized());
        }
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ApiError::unauthorized());
        };
        let Some((session, user)) = state
            .store
            .session_by_token_hash(&token_hash(&token), now)
            .await?
        else {
            return Err(ApiError::unauthorized());
        };
        let changes_state = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if changes_state {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if sent != Some(session.csrf_token.as_str()) {
                return Err(ApiError::forbidden(
                    "missing or wrong X-CSRF-Token for a cookie session",
                ));
            }
        }
        Ok(Self {
            user,
            via: AuthVia::SessionCookie {
                csrf: session.csrf_token,
            },
            from,
        })
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
