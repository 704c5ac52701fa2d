//! The API at router level (`Router::oneshot`) on a migrated store of either backend,
//! with the users vera (viewer), otto (operator) and ada (admin): [`Api`], its
//! [`Reply`], and [`assert_error`] for the error shape.

use super::{enrol, finding, ingested, TestDb};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use chitti_hub::api::auth::token_hash;
use chitti_hub::api::{router, ApiState};
use chitti_hub::credentials::hash_password;
use chitti_hub::evidence::EvidenceStore;
use chitti_hub::live::LiveEvents;
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AnyStore, AuditRecord, NewSession, NewUser, Role};
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;
use uuid::Uuid;

/// Every user's password (with [`Users::SignIn`]).
pub const PASSWORD: &str = "correct horse battery";

/// The users, name and role.
const USERS: [(&str, Role); 3] = [
    ("vera", Role::Viewer),
    ("otto", Role::Operator),
    ("ada", Role::Admin),
];

/// How the users get in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Users {
    /// Through `POST /api/v1/auth/login` with [`PASSWORD`] ([`Api::login`]); one argon2
    /// hash for every account, argon2 being slow on purpose.
    SignIn,
    /// With sessions made in the store, no argon2: [`Api::viewer`], [`Api::operator`],
    /// [`Api::admin`] are their bearer tokens.
    Sessions,
}

/// The router and what a test reaches behind it.
pub struct Api {
    pub app: axum::Router,
    /// The state the router was built from (a test may rebuild the router from it).
    pub state: ApiState,
    pub store: Arc<AnyStore>,
    pub live: Arc<LiveEvents>,
    pub evidence: Arc<EvidenceStore>,
    /// Bearer tokens of vera, otto and ada with [`Users::Sessions`]; empty with
    /// [`Users::SignIn`].
    pub viewer: String,
    pub operator: String,
    pub admin: String,
}

/// An answer: status, headers, the body's bytes and the body as JSON (`Null` if it is
/// not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    pub body: Value,
}

impl Reply {
    /// A header's value, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The `content-type`, or "".
    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or_default()
    }

    /// Asserts an error answer with `status` and `code`; its message.
    pub fn error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.body["error"]["code"], code, "{:?}", self.body);
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Asserts an error answer with a message; the message.
pub fn assert_error(r: &Reply, status: StatusCode, code: &str) -> String {
    let message = r.error(status, code);
    assert!(!message.is_empty(), "{:?}", r.body);
    message
}

impl Api {
    /// The API as the hub builds it, its users signing in with [`PASSWORD`].
    pub async fn new(backend: &str) -> (Self, TestDb) {
        Self::with(backend, Users::SignIn, |state| state).await
    }

    /// The API on a state that `configure` adjusts (live history, evidence store, upload
    /// limits), its users getting in as `users` says.
    pub async fn with(
        backend: &str,
        users: Users,
        configure: impl FnOnce(ApiState) -> ApiState,
    ) -> (Self, TestDb) {
        let db = TestDb::migrated(backend).await;
        let store = Arc::new(db.store.clone());
        let mut tokens = Vec::new();
        let hash = match users {
            Users::SignIn => hash_password(PASSWORD).unwrap(),
            // Never checked: the sessions are made here, not by signing in.
            Users::Sessions => "never used".to_string(),
        };
        let now = chrono::Utc::now();
        for (name, role) in USERS {
            let user = store
                .add_user(&NewUser {
                    username: name.into(),
                    password_hash: hash.clone(),
                    role,
                })
                .await
                .unwrap();
            if users == Users::Sessions {
                let token = format!("chs_test_{name}");
                store
                    .create_session(&NewSession {
                        token_hash: token_hash(&token),
                        user_id: user.id,
                        csrf_token: "csrf".into(),
                        created_at: now,
                        expires_at: now + chrono::Duration::hours(1),
                        from_address: None,
                    })
                    .await
                    .unwrap();
                tokens.push(token);
            } else {
                tokens.push(String::new());
            }
        }
        let state = configure(ApiState::new(store.clone(), false));
        let app = router(state.clone());
        let [viewer, operator, admin] = <[String; 3]>::try_from(tokens).unwrap();
        let api = Self {
            app,
            live: state.live.clone(),
            evidence: state.evidence.clone(),
            state,
            store,
            viewer,
            operator,
            admin,
        };
        (api, db)
    }

    /// Another replica of this hub: a state and router of its own (`configure` gives
    /// it, say, its own evidence-store client) on the same database, so the same
    /// users and sessions.
    pub fn replica(&self, configure: impl FnOnce(ApiState) -> ApiState) -> Self {
        let state = configure(ApiState::new(self.store.clone(), false));
        Self {
            app: router(state.clone()),
            live: state.live.clone(),
            evidence: state.evidence.clone(),
            state,
            store: self.store.clone(),
            viewer: self.viewer.clone(),
            operator: self.operator.clone(),
            admin: self.admin.clone(),
        }
    }

    /// Runs the live-event publisher (it takes the change queue, which tests that read
    /// the changes themselves keep).
    pub fn spawn_publisher(&self) {
        tokio::spawn(chitti_hub::api::stream::run_publisher(
            self.live.clone(),
            self.store.clone(),
        ));
    }

    /// Sends a request through the router.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 256 << 20)
            .await
            .unwrap()
            .to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            bytes,
            body,
        }
    }

    /// `method uri` with a bearer token, a JSON body and more headers.
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = auth {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    /// `GET uri` with a bearer token and an `accept` header.
    pub async fn get(&self, uri: &str, auth: Option<&str>, accept: Option<&str>) -> Reply {
        let accept: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        self.call("GET", uri, auth, None, &accept).await
    }

    /// A call that must succeed with `status`; its body.
    pub async fn ok(
        &self,
        status: StatusCode,
        method: &str,
        uri: &str,
        auth: &str,
        body: Option<Value>,
    ) -> Value {
        let r = self.call(method, uri, Some(auth), body, &[]).await;
        assert_eq!(r.status, status, "{method} {uri}: {:?}", r.body);
        r.body
    }

    /// Signs `user` in with [`PASSWORD`]: its bearer token, CSRF token and session
    /// cookie (`name=value`), the cookie checked to be `HttpOnly` and `SameSite=Strict`.
    pub async fn login(&self, user: &str) -> (String, String, String) {
        let r = self
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": user, "password": PASSWORD})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let cookie = r.headers["set-cookie"].to_str().unwrap().to_string();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let session = cookie.split(';').next().unwrap().to_string();
        (
            r.body["token"].as_str().unwrap().to_string(),
            r.body["csrf_token"].as_str().unwrap().to_string(),
            session,
        )
    }

    /// Signs `user` in: its bearer token.
    pub async fn bearer(&self, user: &str) -> String {
        self.login(user).await.0
    }

    /// Enrols `site/gateway` (creating the site) with a key no test signs with.
    pub async fn enrol(&self, site: &str, gateway: &str) {
        enrol(&*self.store, site, gateway, [7; 32]).await;
    }

    /// Stores a track of three findings: one alert.
    pub async fn alert(&self) -> Uuid {
        let track = Uuid::now_v7();
        let findings: Vec<_> = (0..3)
            .map(|i| finding(track, 1 + i as u8, 50.0 + i as f64, i))
            .collect();
        self.store
            .insert_findings(&ingested(&findings, chrono::Utc::now()))
            .await
            .unwrap();
        let page = self.store.list_alerts(&Default::default()).await.unwrap();
        page.items.iter().find(|a| a.track_id == track).unwrap().id
    }

    /// A dashboard page's HTML, signed in with a session cookie (`name=value`); it must
    /// answer 200.
    pub async fn page(&self, uri: &str, cookie: &str) -> String {
        let (status, html) = self.page_reply(uri, cookie).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        html
    }

    /// A dashboard page's status and HTML, signed in with a session cookie.
    pub async fn page_reply(&self, uri: &str, cookie: &str) -> (StatusCode, String) {
        use tower::ServiceExt;
        let request = Request::get(uri)
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap();
        let response = chitti_hub::dashboard::router(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// The audit log, oldest first, without the sign-in entries (`auth.*`: the tests
    /// sign their users in as they go; `api.rs` tests those entries).
    pub async fn audit_log(&self) -> Vec<AuditRecord> {
        let mut log = self.store.list_audit(1000).await.unwrap();
        log.retain(|r| !r.event.action.starts_with("auth."));
        log.reverse();
        log
    }

    /// The newest audit entry, whatever it is.
    pub async fn last_audited(&self) -> AuditRecord {
        self.store.list_audit(1).await.unwrap().remove(0)
    }
}
