//! A real HTTP receiver for notification tests: one server on a free port with a path
//! per channel, recording every request, checking the requests of one path with the
//! test's signature check (a forged or stale one gets 401), and answering as the test
//! scripts it (500s, 429 with `Retry-After`, 410) before it answers 200.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A request the receiver took.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook`, `slack`, `teams`, `pagerduty`, …
    pub path: String,
    /// Lowercase header names.
    pub headers: HashMap<String, String>,
    /// The JSON body.
    pub body: serde_json::Value,
    /// What the receiver answered.
    pub answered: u16,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: HashMap<String, VecDeque<(u16, Option<String>)>>,
    down: Option<u16>,
    slow: Option<std::time::Duration>,
}

/// Checks a signed request (lowercase headers, body): true when it verifies.
pub type SignatureCheck = Arc<dyn Fn(&HashMap<String, String>, &[u8]) -> bool + Send + Sync>;

type Shared = (Arc<Mutex<Inner>>, String, SignatureCheck);

/// The receiver; dropped (every clone), it stops.
#[derive(Clone)]
pub struct HttpReceiver {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl HttpReceiver {
    /// Starts one on a free port; requests to `signed_path` must pass `check` (else 401).
    pub async fn start(signed_path: &str, check: SignatureCheck) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(take))
            .with_state((Arc::clone(&inner), signed_path.to_string(), check));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        Self {
            base,
            inner,
            _stop: Arc::new(stop_tx),
        }
    }

    /// The URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// The next answers of `path`, in order (then 200).
    pub fn script(&self, path: &str, answers: &[(u16, Option<&str>)]) {
        let mut inner = self.inner.lock().unwrap();
        inner.script.entry(path.to_string()).or_default().extend(
            answers
                .iter()
                .map(|(status, retry)| (*status, retry.map(str::to_string))),
        );
    }

    /// While `Some(status)`, every request is answered with it (a receiver that is
    /// down); `None`: answers as scripted again.
    pub fn down(&self, status: Option<u16>) {
        self.inner.lock().unwrap().down = status;
    }

    /// While `Some(wait)`, every answer comes after `wait` (a slow receiver).
    pub fn slow(&self, wait: Option<std::time::Duration>) {
        self.inner.lock().unwrap().slow = wait;
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The requests to `path` that were answered 2xx.
    pub fn taken(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path && (200..300).contains(&r.answered))
            .collect()
    }
}

async fn take(
    State((inner, signed_path, check)): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let mut answer = (200u16, None);
    if path == signed_path && !check(&headers, &body) {
        answer = (401, None);
    }
    let slow = inner.lock().unwrap().slow;
    if let Some(wait) = slow {
        tokio::time::sleep(wait).await;
    }
    let mut inner = inner.lock().unwrap();
    if let Some(status) = inner.down {
        answer = (status, None);
    }
    if answer.0 == 200 {
        if let Some(next) = inner.script.get_mut(&path).and_then(VecDeque::pop_front) {
            answer = next;
        }
    }
    inner.received.push(Received {
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        answered: answer.0,
    });
    let status = StatusCode::from_u16(answer.0).unwrap();
    match answer.1 {
        Some(retry) => (status, [("retry-after", retry)], "scripted").into_response(),
        None => (status, "ok").into_response(),
    }
}
