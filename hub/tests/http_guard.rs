//! The HTTP router's guards, through `chitti_hub::http::router` with real settings:
//! strict CORS, the per-client rate limit and the security headers.

mod support;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use chitti_hub::config::HttpConfig;
use chitti_hub::store::prelude::*;
use chitti_hub::store::NewGateway;
use std::net::SocketAddr;
use std::sync::Arc;
use support::TestDb;
use tower::ServiceExt;

async fn app(settings: HttpConfig) -> (axum::Router, TestDb) {
    app_with_metrics_token(settings, None).await
}

async fn app_with_metrics_token(
    settings: HttpConfig,
    metrics_token: Option<[u8; 32]>,
) -> (axum::Router, TestDb) {
    let db = TestDb::migrated("sqlite").await;
    let bus = chitti_hub::broker::ExternalBus::connect(chitti_hub::broker::ExternalSettings::new(
        "mqtt://127.0.0.1:1",
        "http-guard-test",
    ))
    .unwrap();
    let app = chitti_hub::http::router(chitti_hub::http::HttpState {
        store: Arc::new(db.store.clone()),
        ingest: Arc::new(chitti_hub::ingest::IngestMetrics::default()),
        notify: Default::default(),
        notifications: Default::default(),
        dashboard_url: None,
        bus: Arc::new(chitti_hub::broker::HubBus::External(bus)),
        started: std::time::Instant::now(),
        evidence: Arc::new(chitti_hub::evidence::EvidenceStore::in_memory(1 << 20)),
        live: Arc::new(chitti_hub::live::LiveEvents::new(16)),
        settings,
        metrics_token,
        models: Default::default(),
        retention: Default::default(),
    });
    (app, db)
}

fn request(method: &str, uri: &str, from: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut r = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "hub.local:8080");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let mut req = if method == "POST" {
        r.header("content-type", "application/json")
            .body(Body::from(
                r#"{"username":"nobody","password":"wrong password"}"#,
            ))
    } else {
        r.body(Body::empty())
    }
    .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(from.parse::<SocketAddr>().unwrap()));
    req
}

async fn error_code(resp: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn only_listed_origins_get_cors_and_others_cannot_change_state() {
    let (app, _db) = app(HttpConfig {
        allowed_origins: vec!["https://ops.example.net".into()],
        ..HttpConfig::default()
    })
    .await;
    let client = "10.0.0.1:5000";
    // A preflight from the listed origin.
    let preflight = |origin: &str| {
        request(
            "OPTIONS",
            "/api/v1/alerts",
            client,
            &[("origin", origin), ("access-control-request-method", "GET")],
        )
    };
    let r = app
        .clone()
        .oneshot(preflight("https://ops.example.net"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://ops.example.net"
    );
    assert!(r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    // No credentials cross-site: a session cookie never works from another origin.
    assert!(!r.headers().contains_key("access-control-allow-credentials"));
    // From anywhere else: refused, in the API's error shape.
    let r = app
        .clone()
        .oneshot(preflight("https://evil.example.org"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(r).await, "forbidden");

    // A state change from an unlisted origin never reaches the handler.
    let post = |origin: &str| request("POST", "/api/v1/auth/login", client, &[("origin", origin)]);
    let r = app
        .clone()
        .oneshot(post("https://evil.example.org"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The hub's own origin (its Host) and listed ones reach it (and fail the login).
    for origin in ["http://hub.local:8080", "https://ops.example.net"] {
        let r = app.clone().oneshot(post(origin)).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{origin}");
    }
    // A read from an unlisted origin is answered without CORS headers (the browser
    // keeps it from the page); a listed one gets them, with Vary.
    let get = |origin: &str| request("GET", "/api/v1/me", client, &[("origin", origin)]);
    let r = app
        .clone()
        .oneshot(get("https://evil.example.org"))
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = app
        .clone()
        .oneshot(get("https://ops.example.net"))
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://ops.example.net"
    );
    assert_eq!(r.headers()["vary"], "origin");
}

#[tokio::test]
async fn each_client_is_rate_limited_on_its_own_and_health_is_not() {
    // 60 a minute: a burst of 10.
    let (app, db) = app(HttpConfig {
        requests_per_minute: 60,
        ..HttpConfig::default()
    })
    .await;
    for i in 0..10 {
        let r = app
            .clone()
            .oneshot(request("GET", "/api/v1/me", "10.0.0.1:1", &[]))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "request {i}");
    }
    let r = app
        .clone()
        .oneshot(request("GET", "/api/v1/me", "10.0.0.1:2", &[]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(error_code(r).await, "rate_limited");
    // Another address has its own bucket; health and metrics are never limited.
    let r = app
        .clone()
        .oneshot(request("GET", "/api/v1/me", "10.0.0.2:1", &[]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for _ in 0..20 {
        let r = app
            .clone()
            .oneshot(request("GET", "/healthz", "10.0.0.1:1", &[]))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // A gateway's evidence upload counts against the gateway, not its (shared, here
    // exhausted) address, once its signature verifies…
    let key = chitti_common::signing::signing_key_from_seed(&[3; 32]);
    db.store
        .add_gateway(&NewGateway {
            site: "north-yard".into(),
            gateway: "gw-1".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
            public_key: key.verifying_key().to_bytes(),
        })
        .await
        .unwrap();
    let sha = "0".repeat(64);
    let signed = chitti_common::signing::sign_evidence("north-yard", "gw-1", &sha, &key);
    let put = |from: &str, gw: &str, signature: &str| {
        request(
            "PUT",
            &format!("/api/v1/evidence/{sha}"),
            from,
            &[("x-chitti-gateway", gw), ("x-chitti-signature", signature)],
        )
    };
    let r = app
        .clone()
        .oneshot(put("10.0.0.1:1", "north-yard/gw-1", &signed))
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // …and only then: claiming the gateway without its signature counts against the
    // address (exhausted here), so nobody can spend a real gateway's budget…
    let r = app
        .clone()
        .oneshot(put("10.0.0.1:1", "north-yard/gw-1", &"0".repeat(128)))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // …not even from many addresses at once: after 50 forged claims, the real gateway
    // still has its burst.
    for i in 0..50 {
        let _ = app
            .clone()
            .oneshot(put(
                &format!("10.1.0.{i}:1"),
                "north-yard/gw-1",
                &"0".repeat(128),
            ))
            .await
            .unwrap();
    }
    for i in 0..9 {
        let r = app
            .clone()
            .oneshot(put("10.0.0.1:1", "north-yard/gw-1", &signed))
            .await
            .unwrap();
        assert_ne!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "genuine upload {i}"
        );
    }
}

#[tokio::test]
async fn metrics_can_require_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics-token");
    std::fs::write(&file, "s3cret-metrics-token-0123\n").unwrap();
    let token = chitti_hub::http::read_metrics_token(&file).unwrap();
    std::fs::write(dir.path().join("short"), "abc").unwrap();
    let short = chitti_hub::http::read_metrics_token(&dir.path().join("short")).unwrap_err();
    assert!(short.contains("shorter than 16 characters"), "{short}");
    let (app, _db) = app_with_metrics_token(HttpConfig::default(), Some(token)).await;
    let get = |auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        request("GET", "/metrics", "10.0.0.1:1", &headers)
    };
    for auth in [
        None,
        Some("Bearer wrong-token-wrong-token"),
        Some("Basic czNjcmV0"),
    ] {
        let r = app.clone().oneshot(get(auth)).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_eq!(error_code(r).await, "unauthorized");
    }
    let r = app
        .clone()
        .oneshot(get(Some("Bearer s3cret-metrics-token-0123")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("chitti_hub_uptime_seconds"));
    // Health stays open.
    let r = app
        .clone()
        .oneshot(request("GET", "/healthz", "10.0.0.1:1", &[]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn public_origins_pin_the_host_and_the_scheme() {
    let (app, _db) = app(HttpConfig {
        public_origins: vec!["https://hub.example.net".into()],
        ..HttpConfig::default()
    })
    .await;
    let with_host = |method: &str, uri: &str, host: &str, origin: Option<&str>| {
        let mut req = request(method, uri, "10.0.0.1:1", &[]);
        req.headers_mut().insert("host", host.parse().unwrap());
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        req
    };
    // Another Host (DNS rebinding, a forged Host): 421, in the error shape.
    let r = app
        .clone()
        .oneshot(with_host("GET", "/api/v1/me", "hub.local:8080", None))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(error_code(r).await, "misdirected_request");
    // Probes reach a replica by its address: answered.
    let r = app
        .clone()
        .oneshot(with_host("GET", "/healthz", "10.1.2.3:8080", None))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The hub's own host: served; its own origin is https only.
    let r = app
        .clone()
        .oneshot(with_host("GET", "/api/v1/me", "hub.example.net", None))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for (origin, want) in [
        ("https://hub.example.net", StatusCode::UNAUTHORIZED),
        ("http://hub.example.net", StatusCode::FORBIDDEN),
    ] {
        let r = app
            .clone()
            .oneshot(with_host(
                "POST",
                "/api/v1/auth/login",
                "hub.example.net",
                Some(origin),
            ))
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{origin}");
    }
}
