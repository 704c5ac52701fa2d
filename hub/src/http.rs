//! The hub's HTTP side: `/healthz` (the process answers), `/readyz` (the database
//! answers and the broker side is up), `/metrics` (Prometheus), the API
//! ([`crate::api`]) and the dashboard ([`crate::dashboard`]), behind strict CORS and a
//! per-client rate limit ([`crate::guard`]).
//!
//! `/metrics` may sit behind a bearer token (`http.metrics_token_file`, compared as
//! SHA-256 digests). Every answer gets the security headers (`nosniff`, `DENY` framing,
//! no referrer, `no-store`, a strict CSP, `default-src 'self'`), and every body a 1 MiB
//! limit unless its route sets its own (evidence, uploads).

use crate::broker::HubBus;
use crate::ingest::IngestMetrics;
use crate::store::{AnyStore, Store};
use crate::store::{FleetStore, RetentionStore};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chitti_common::metrics_text::MetricsWriter;
use std::sync::Arc;
use std::time::Instant;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The store.
    pub store: Arc<AnyStore>,
    /// Ingest counters.
    pub ingest: Arc<IngestMetrics>,
    /// Notification counters.
    pub notify: Arc<crate::notify::NotifyMetrics>,
    /// The notification channels and rules.
    pub notifications: Arc<crate::notify::config::NotificationsConfig>,
    /// The dashboard's base URL, for links in messages.
    pub dashboard_url: Option<String>,
    /// The MQTT side.
    pub bus: Arc<HubBus>,
    /// When the hub started.
    pub started: Instant,
    /// Evidence blobs.
    pub evidence: Arc<crate::evidence::EvidenceStore>,
    /// Live events for the API's stream.
    pub live: Arc<crate::live::LiveEvents>,
    /// Cookie, CORS, rate and upload settings.
    pub settings: crate::config::HttpConfig,
    /// The bearer token `/metrics` requires (`http.metrics_token_file`), as its SHA-256;
    /// `None`: open.
    pub metrics_token: Option<[u8; 32]>,
    /// The model registry's limits and runtime.
    pub models: crate::config::ModelsConfig,
    /// What is kept and for how long.
    pub retention: crate::retention::RetentionConfig,
}

/// Reads `http.metrics_token_file` (trimmed; at least 16 characters) into what
/// [`HttpState::metrics_token`] holds.
pub fn read_metrics_token(path: &std::path::Path) -> Result<[u8; 32], String> {
    use sha2::Digest;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("http.metrics_token_file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.len() < 16 {
        return Err(format!(
            "http.metrics_token_file {}: the token is shorter than 16 characters",
            path.display()
        ));
    }
    Ok(sha2::Sha256::digest(token.as_bytes()).into())
}

/// Largest request body accepted by the API (uploads and evidence get their own limits).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The router: health, metrics and the `/api/v1` API, with body limits and security
/// headers on every answer.
pub fn router(state: HttpState) -> Router {
    let api_state =
        crate::api::ApiState::new(Arc::clone(&state.store), state.settings.secure_cookies)
            .with_evidence(Arc::clone(&state.evidence))
            .with_live(Arc::clone(&state.live))
            .with_notifications(
                Arc::clone(&state.notifications),
                state.dashboard_url.clone(),
            )
            .with_models(state.models.clone())
            .with_retention(state.retention.clone())
            .with_max_upload_bytes(state.settings.max_upload_bytes.0)
            .with_token_max_days(state.settings.token_max_days)
            .with_analysis_limits(
                state.settings.max_frame_pixels,
                state.settings.max_file_pixels,
                state.settings.max_concurrent_analyses as usize,
            );
    // The dashboard shares the API's state (and so its sessions and login limits).
    let dashboard = crate::dashboard::router(api_state.clone());
    let api = crate::api::router(api_state);
    let cors = Arc::new(crate::guard::CorsPolicy::new(
        &state.settings.allowed_origins,
        &state.settings.public_origins,
        state.settings.secure_cookies,
    ));
    let limiter = crate::guard::RateGuard {
        limiter: Arc::new(crate::guard::RateLimiter::per_minute(
            state.settings.requests_per_minute,
        )),
        gateways: Arc::new(crate::guard::GatewayKeys::new(Arc::clone(&state.store))),
    };
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(dashboard)
        .merge(api)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // The limit runs first (outermost), so refused origins still count.
        .layer(axum::middleware::from_fn_with_state(
            cors,
            crate::guard::cors,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limiter,
            crate::guard::rate_limit,
        ))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let h = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        (
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'none'",
        ),
    ] {
        h.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    if let HubBus::External(x) = s.bus.as_ref() {
        if !*x.subscribed().borrow() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: not subscribed at the external broker\n".to_string(),
            );
        }
    }
    if let HubBus::Nats(n) = s.bus.as_ref() {
        if let Some(why) = n.not_ready_reason() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            );
        }
    }
    let started = Instant::now();
    match s.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            format!(
                "ready: store {} answered in {} ms\n",
                s.store.backend().name(),
                started.elapsed().as_millis()
            ),
        ),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {err}\n"),
        ),
    }
}

async fn metrics(State(s): State<HttpState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(want) = &s.metrics_token {
        use sha2::Digest;
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| <[u8; 32]>::from(sha2::Sha256::digest(t.trim().as_bytes())));
        // Digests compared: the time taken says nothing about the token.
        if sent.as_ref() != Some(want) {
            let mut r = crate::api::error::ApiError::new(
                crate::api::error::ErrorCode::Unauthorized,
                "/metrics needs Authorization: Bearer with the token of http.metrics_token_file",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    let mut out = MetricsWriter::new();
    crate::serve::render_metrics(&mut out, &s.ingest, &s.bus);
    crate::notify::render_metrics(&mut out, &s.notify);
    if let Some(listening) = s.live.relay_listening() {
        out.gauge(
            "chitti_hub_live_relay_listening",
            "1 while this replica hears the others' live changes (Postgres LISTEN).",
            &[],
            if listening { 1.0 } else { 0.0 },
        );
    }
    let db_started = Instant::now();
    let db_up = s.store.ping().await.is_ok();
    out.gauge(
        "chitti_hub_store_up",
        "1 when the database answers.",
        &[],
        if db_up { 1.0 } else { 0.0 },
    );
    out.gauge(
        "chitti_hub_store_ping_seconds",
        "Time the database took to answer a ping.",
        &[],
        db_started.elapsed().as_secs_f64(),
    );
    if let Ok(gateways) = s.store.list_gateways().await {
        let online = gateways
            .iter()
            .filter(|g| g.online && !g.is_revoked())
            .count();
        out.gauge(
            "chitti_hub_gateways_online",
            "Enrolled gateways whose last status said online.",
            &[],
            online as f64,
        );
        out.gauge(
            "chitti_hub_gateways",
            "Enrolled gateways (not revoked).",
            &[],
            gateways.iter().filter(|g| !g.is_revoked()).count() as f64,
        );
    }
    // Whichever replica ran it: the store's record of the newest run.
    if let Ok(Some(run)) = s
        .store
        .retention_runs(1)
        .await
        .map(|r| r.into_iter().next())
    {
        render_retention(&mut out, &run);
    }
    out.gauge(
        "chitti_hub_uptime_seconds",
        "Seconds since the hub started.",
        &[],
        s.started.elapsed().as_secs_f64(),
    );
    (
        [(
            header::CONTENT_TYPE,
            chitti_common::metrics_text::CONTENT_TYPE,
        )],
        out.finish(),
    )
        .into_response()
}

/// The newest retention run as gauges.
fn render_retention(out: &mut MetricsWriter, run: &crate::store::RetentionRun) {
    out.gauge(
        "chitti_hub_retention_last_run_timestamp_seconds",
        "When the newest retention run finished (any replica).",
        &[],
        run.finished_at.timestamp() as f64,
    );
    out.gauge(
        "chitti_hub_retention_last_run_failed",
        "1 when the newest retention run failed (its error is at GET /api/v1/retention).",
        &[],
        if run.error.is_some() { 1.0 } else { 0.0 },
    );
    let r = &run.removed;
    for (kind, n) in [
        ("findings", r.findings),
        ("alerts", r.alerts),
        ("telemetry_minutes", r.telemetry_minutes),
        ("telemetry_hours", r.telemetry_hours),
        ("dead_letters", r.dead_letters),
        ("evidence", r.evidence),
    ] {
        out.gauge(
            "chitti_hub_retention_last_run_removed",
            "Rows the newest retention run removed (minutes: rolled up into hours), per kind.",
            &[("kind", kind)],
            n as f64,
        );
    }
    out.gauge(
        "chitti_hub_retention_last_run_kept_findings",
        "Findings past their retention the newest run kept (open alert, hold, kept report).",
        &[],
        r.findings_kept as f64,
    );
    for u in &run.usage {
        out.gauge(
            "chitti_hub_storage_bytes",
            "Bytes per kind of data as of the newest retention run.",
            &[("kind", u.kind.as_str())],
            u.bytes as f64,
        );
    }
}
