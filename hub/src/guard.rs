//! What stands in front of the API: the served hosts, strict CORS and a per-client rate
//! limit.
//!
//! **Hosts.** With `http.public_origins` set, a request whose `Host` names none of them
//! gets 421 (the health probes excepted).
//!
//! **CORS.** A request without `Origin`, or from the hub's own origin, passes as is.
//! An origin listed in `http.allowed_origins` gets the CORS headers it needs (bearer
//! tokens only: no credentials, so a session cookie never works cross-site). Any other
//! origin gets no CORS headers, and a state-changing request from it (anything but
//! GET/HEAD, and every preflight) is refused with 403 before a handler runs — a second
//! wall behind SameSite cookies and CSRF tokens.
//!
//! **Rate limit.** A token bucket per client — the peer address, or for a gateway's
//! evidence upload whose signature **verifies** the gateway (many gateways can share
//! one NAT address; an unverified `X-Chitti-Gateway` counts against the address, so
//! nobody can spend a real gateway's budget or grow the table with made-up names) —
//! refilled at `http.requests_per_minute`, with a burst of a tenth of a
//! minute's worth (at least 10). Beyond it: 429 with `Retry-After`. The table of
//! buckets is bounded: when full, buckets that have refilled are dropped, and if none
//! has, the oldest half goes.

use crate::api::error::{ApiError, ErrorCode};
use crate::store::FleetStore;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most clients tracked at once.
pub const MAX_TRACKED_CLIENTS: usize = 65_536;

/// The CORS policy, and which origins are the hub's own.
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    allowed: Vec<String>,
    /// `http.public_origins`: the hub's own origins, scheme included. Empty: the
    /// request's `Host` under `scheme`.
    public: Vec<String>,
    /// The scheme the hub is reached by when `public` is empty: `https` with
    /// `http.secure_cookies` (behind TLS), else `http`.
    scheme: &'static str,
}

fn normalise_origin(origin: &str) -> String {
    origin.trim_end_matches('/').to_ascii_lowercase()
}

impl CorsPolicy {
    /// A policy allowing `allowed` origins besides the hub's own: `public` when given,
    /// else the request's host under `https` (`behind_tls`) or `http`.
    pub fn new(allowed: &[String], public: &[String], behind_tls: bool) -> Self {
        Self {
            allowed: allowed.iter().map(|o| normalise_origin(o)).collect(),
            public: public.iter().map(|o| normalise_origin(o)).collect(),
            scheme: if behind_tls { "https" } else { "http" },
        }
    }

    fn is_allowed(&self, origin: &str) -> bool {
        self.allowed
            .iter()
            .any(|a| a == &origin.to_ascii_lowercase())
    }

    /// Whether `origin` is the hub's own: one of `public`, or, without them, the
    /// request's `Host` under the hub's scheme (a page on `http://` is not the hub
    /// served on `https://`).
    fn is_same_origin(&self, origin: &str, headers: &HeaderMap) -> bool {
        let origin = origin.to_ascii_lowercase();
        if !self.public.is_empty() {
            return self.public.contains(&origin);
        }
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
            return false;
        };
        origin == format!("{}://{}", self.scheme, host.to_ascii_lowercase())
    }

    /// Whether a request for `host` may be served: any host without
    /// `http.public_origins`, else only theirs (a DNS-rebinding page, or a forged
    /// `Host` in links the hub writes, gets 421).
    fn serves_host(&self, host: Option<&str>) -> bool {
        if self.public.is_empty() {
            return true;
        }
        let Some(host) = host.map(str::to_ascii_lowercase) else {
            return false;
        };
        self.public
            .iter()
            .any(|o| o.split_once("://").is_some_and(|(_, h)| h == host))
    }
}

const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOWED_HEADERS: &str = "authorization, content-type, x-csrf-token, last-event-id";

/// The CORS middleware (see the module docs).
pub async fn cors(State(policy): State<Arc<CorsPolicy>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // Probes and scrapers reach a replica by its address: health and metrics answer
    // whatever the Host.
    let probe = matches!(path, "/healthz" | "/readyz" | "/metrics");
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !probe && !policy.serves_host(host) {
        tracing::debug!(host = ?host, "request for a host not in http.public_origins");
        return ApiError::new(
            ErrorCode::MisdirectedRequest,
            format!(
                "this hub does not serve host {:?} (http.public_origins)",
                host.unwrap_or("")
            ),
        )
        .into_response();
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    if policy.is_same_origin(&origin, req.headers()) {
        return next.run(req).await;
    }
    let allowed = policy.is_allowed(&origin);
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    if !allowed && (preflight || !safe) {
        tracing::debug!(%origin, method = %req.method(), "cross-origin request refused");
        return ApiError::forbidden(format!("origin {origin:?} is not allowed")).into_response();
    }
    if !allowed {
        // A read from elsewhere: answered, but without CORS headers the browser keeps
        // the answer from the page.
        return next.run(req).await;
    }
    let mut response = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOWED_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        next.run(req).await
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.append(header::VARY, HeaderValue::from_static("origin"));
    response
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per client.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
    max_clients: usize,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_second", &self.per_second)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// `per_minute` requests a minute per client, with a burst of a tenth of that (at
    /// least 10).
    pub fn per_minute(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, MAX_TRACKED_CLIENTS)
    }

    /// The same, tracking at most `max_clients` clients.
    pub fn with_capacity(per_minute: u32, max_clients: usize) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        Self {
            per_second: per_minute / 60.0,
            burst: (per_minute / 10.0).max(10.0),
            buckets: Mutex::new(HashMap::new()),
            max_clients: max_clients.max(1),
        }
    }

    /// Takes a token for `client` at `now`; `Err(wait)` when there is none.
    pub fn check(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(client) && buckets.len() >= self.max_clients {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(client.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }

    fn evict(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let full_after = self.burst / self.per_second;
        buckets.retain(|_, b| now.saturating_duration_since(b.at).as_secs_f64() < full_after);
        if buckets.len() >= self.max_clients {
            let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            buckets.retain(|_, b| b.at > cut);
        }
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// When a gateway's key was read, and the key (`None`: no such, or a revoked, gateway).
type RememberedKey = (Instant, Option<ed25519_dalek::VerifyingKey>);

/// Gateways' public keys, remembered for [`GatewayKeys::TTL`]: what the rate limit
/// checks an evidence upload's signature with before counting it against a gateway.
pub struct GatewayKeys {
    store: Arc<crate::store::AnyStore>,
    keys: Mutex<HashMap<(String, String), RememberedKey>>,
}

impl std::fmt::Debug for GatewayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayKeys").finish_non_exhaustive()
    }
}

impl GatewayKeys {
    /// How long a key (or its absence) is remembered.
    pub const TTL: Duration = Duration::from_secs(30);
    /// Most gateways remembered (the table is emptied when full).
    pub const MAX: usize = 16_384;

    /// Keys read from `store`.
    pub fn new(store: Arc<crate::store::AnyStore>) -> Self {
        Self {
            store,
            keys: Mutex::new(HashMap::new()),
        }
    }

    async fn key(&self, site: &str, gateway: &str) -> Option<ed25519_dalek::VerifyingKey> {
        let id = (site.to_string(), gateway.to_string());
        if let Some((at, key)) = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            if at.elapsed() < Self::TTL {
                return *key;
            }
        }
        let key = match self.store.gateway(site, gateway).await {
            Ok(Some(r)) if !r.is_revoked() => {
                ed25519_dalek::VerifyingKey::from_bytes(&r.public_key).ok()
            }
            Ok(_) => None,
            // The handler will answer the store error; count against the address.
            Err(_) => return None,
        };
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= Self::MAX {
            keys.clear();
        }
        keys.insert(id, (Instant::now(), key));
        key
    }

    /// The gateway an evidence upload (`PUT /api/v1/evidence/{sha256}` with its
    /// gateway and signature headers) is signed by, when its signature verifies.
    async fn verified_uploader(&self, upload: EvidenceClaim) -> Option<String> {
        let (site, gateway) = crate::store::parse_gateway_username(upload.gateway.trim())?;
        let key = self.key(site, gateway).await?;
        chitti_common::signing::verify_evidence(
            site,
            gateway,
            &upload.sha256,
            &upload.signature,
            &key,
        )
        .ok()?;
        Some(format!("gateway {site}/{gateway}"))
    }
}

/// What an evidence upload claims, read off the request before anything is awaited.
struct EvidenceClaim {
    sha256: String,
    gateway: String,
    signature: String,
}

impl EvidenceClaim {
    fn of(req: &Request) -> Option<Self> {
        use chitti_common::signing::{GATEWAY_HEADER, SIGNATURE_HEADER};
        if req.method() != Method::PUT {
            return None;
        }
        let sha256 = req.uri().path().strip_prefix("/api/v1/evidence/")?;
        crate::evidence::validate_sha256(sha256).ok()?;
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Some(Self {
            sha256: sha256.to_string(),
            gateway: header(GATEWAY_HEADER)?,
            signature: header(SIGNATURE_HEADER)?,
        })
    }
}

/// What the rate-limit middleware needs.
#[derive(Debug, Clone)]
pub struct RateGuard {
    /// The buckets.
    pub limiter: Arc<RateLimiter>,
    /// Keys to verify evidence uploads with.
    pub gateways: Arc<GatewayKeys>,
}

/// Who a request counts against: a verified uploading gateway, else the address.
async fn client_key(
    address: String,
    claim: Option<EvidenceClaim>,
    gateways: &GatewayKeys,
) -> String {
    match claim {
        Some(claim) => gateways.verified_uploader(claim).await.unwrap_or(address),
        None => address,
    }
}

/// The rate-limit middleware, for `/api` (see the module docs).
pub async fn rate_limit(State(guard): State<RateGuard>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    // Read off the request before awaiting: a `&Request` is not `Send`.
    let address = match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => addr.ip().to_string(),
        None => "unknown".to_string(),
    };
    let claim = EvidenceClaim::of(&req);
    let client = client_key(address, claim, &guard.gateways).await;
    match guard.limiter.check(&client, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            tracing::debug!(%client, "rate limited");
            let mut r = ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many requests from this client; retry in {} s",
                    wait.as_secs().max(1)
                ),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_the_rate() {
        let l = RateLimiter::per_minute(600); // 10/s, burst 60
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(l.check("a", t0).is_ok());
        }
        let wait = l.check("a", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(101), "{wait:?}");
        // Another client is not affected.
        assert!(l.check("b", t0).is_ok());
        // A second later, ten more.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            assert!(l.check("a", t1).is_ok());
        }
        assert!(l.check("a", t1).is_err());
    }

    #[test]
    fn the_table_of_clients_stays_bounded() {
        let l = RateLimiter::with_capacity(600, 100);
        let t0 = Instant::now();
        for i in 0..1000 {
            let _ = l.check(&format!("client-{i}"), t0 + Duration::from_millis(i));
            assert!(l.tracked() <= 100);
        }
        // A client dropped from the table starts again with a full bucket: eviction
        // never makes a limit stricter.
        assert!(l.check("client-0", t0 + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn origins_compare_exactly_and_without_case_scheme_included() {
        let p = CorsPolicy::new(&["https://Ops.Example.net".to_string()], &[], false);
        assert!(p.is_allowed("https://ops.example.net"));
        assert!(!p.is_allowed("https://ops.example.net.evil.org"));
        assert!(!p.is_allowed("http://ops.example.net"));
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("hub.local:8080"));
        assert!(p.is_same_origin("http://hub.local:8080", &h));
        assert!(!p.is_same_origin("http://hub.local:8081", &h));
        // Behind TLS the hub's own origin is https: an http page is another origin.
        let tls = CorsPolicy::new(&[], &[], true);
        assert!(tls.is_same_origin("https://HUB.local:8080", &h));
        assert!(!tls.is_same_origin("http://hub.local:8080", &h));
        // With public origins, only those, whatever the Host says; other hosts are
        // not served.
        let public = CorsPolicy::new(&[], &["https://hub.example.net".to_string()], false);
        assert!(public.is_same_origin("https://hub.example.net", &h));
        assert!(!public.is_same_origin("http://hub.example.net", &h));
        assert!(!public.is_same_origin("http://hub.local:8080", &h));
        assert!(public.serves_host(Some("Hub.Example.net")));
        assert!(!public.serves_host(Some("hub.local:8080")));
        assert!(!public.serves_host(None));
        assert!(p.serves_host(Some("anything")));
    }
}
