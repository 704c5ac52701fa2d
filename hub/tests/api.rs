//! The API at router level (`Router::oneshot`), on SQLite and Postgres: who may do
//! what (each role × each action), sessions, CSRF, tokens, the alert lifecycle,
//! pagination and the error shape.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AuditEvent, DeadLetter};
use serde_json::{json, Value};
use support::{assert_error, cool_finding, finding, ingested, Api};
use tower::ServiceExt;
use uuid::Uuid;

async fn each_role_may_do_exactly_what_it_should(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let alert = api.alert().await;
    let mut tokens = Vec::new();
    for user in ["vera", "otto", "ada"] {
        tokens.push(api.login(user).await.0);
    }
    let new_user = |n: usize| json!({"username": format!("new-{n}"), "password": "another long password", "role": "viewer"});
    // (method, path, body, allowed for viewer, operator, admin)
    let mut n = 0;
    let cases: Vec<(&str, String, Option<Value>, [bool; 3])> = vec![
        ("GET", "/api/v1/findings".into(), None, [true, true, true]),
        ("GET", "/api/v1/alerts".into(), None, [true, true, true]),
        (
            "GET",
            format!("/api/v1/alerts/{alert}"),
            None,
            [true, true, true],
        ),
        ("GET", "/api/v1/gateways".into(), None, [true, true, true]),
        (
            "POST",
            format!("/api/v1/alerts/{alert}/comment"),
            Some(json!({"note": "looked at it"})),
            [false, true, true],
        ),
        (
            "POST",
            format!("/api/v1/alerts/{alert}/assign"),
            Some(json!({"assignee": "field crew 3"})),
            [false, true, true],
        ),
        ("GET", "/api/v1/users".into(), None, [false, false, true]),
        (
            "POST",
            "/api/v1/users".into(),
            Some(Value::Null),
            [false, false, true],
        ),
        ("GET", "/api/v1/me".into(), None, [true, true, true]),
    ];
    for (method, path, body, allowed) in cases {
        for (role, token) in tokens.iter().enumerate() {
            let body = match &body {
                Some(Value::Null) => {
                    n += 1;
                    Some(new_user(n))
                }
                other => other.clone(),
            };
            let r = api.call(method, &path, Some(token), body, &[]).await;
            if allowed[role] {
                assert!(
                    r.status.is_success(),
                    "{method} {path} as role {role}: {} {:?}",
                    r.status,
                    r.body
                );
            } else {
                assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
            }
        }
        // Nobody signed in: 401 for all of them.
        let r = api.call(method, &path, None, None, &[]).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // The audit trail of the alert names who did what.
    let r = api
        .call(
            "GET",
            &format!("/api/v1/alerts/{alert}"),
            Some(&tokens[0]),
            None,
            &[],
        )
        .await;
    let actors: Vec<&str> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["otto", "ada", "otto", "ada"]);
    assert_eq!(
        r.body["history"].as_array().unwrap().len(),
        3,
        "°C over time"
    );
}

async fn the_lifecycle_refuses_invalid_transitions_with_409(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let alert = api.alert().await;
    let (otto, _, _) = api.login("otto").await;
    let act = |a: &'static str| format!("/api/v1/alerts/{alert}/{a}");
    assert_eq!(
        api.call("POST", &act("acknowledge"), Some(&otto), None, &[])
            .await
            .body["status"],
        "acknowledged"
    );
    assert_error(
        &api.call("POST", &act("acknowledge"), Some(&otto), None, &[])
            .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let r = api
        .call(
            "POST",
            &act("resolve"),
            Some(&otto),
            Some(json!({"note": "clamp re-torqued"})),
            &[],
        )
        .await;
    assert_eq!(r.body["status"], "resolved");
    assert_error(
        &api.call("POST", &act("resolve"), Some(&otto), None, &[])
            .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_eq!(
        api.call("POST", &act("reopen"), Some(&otto), None, &[])
            .await
            .body["status"],
        "open"
    );
    assert_error(
        &api.call("POST", &act("explode"), Some(&otto), None, &[])
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.call("POST", &act("comment"), Some(&otto), None, &[])
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &api.call(
            "POST",
            &act("assign"),
            Some(&otto),
            Some(json!({"wrong": 1})),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let missing = Uuid::now_v7();
    assert_error(
        &api.call(
            "POST",
            &format!("/api/v1/alerts/{missing}/acknowledge"),
            Some(&otto),
            None,
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

async fn cookie_sessions_need_csrf_tokens_and_logout_ends_them(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let alert = api.alert().await;
    let (_, csrf, cookie) = api.login("otto").await;
    let path = format!("/api/v1/alerts/{alert}/acknowledge");
    // Reading with the cookie works; changing state without the CSRF token does not.
    assert_eq!(
        api.call("GET", "/api/v1/alerts", None, None, &[("cookie", &cookie)])
            .await
            .status,
        StatusCode::OK
    );
    assert_error(
        &api.call("POST", &path, None, None, &[("cookie", &cookie)])
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &api.call(
            "POST",
            &path,
            None,
            None,
            &[("cookie", &cookie), ("x-csrf-token", "guess")],
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = api
        .call(
            "POST",
            &path,
            None,
            None,
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = api
        .call(
            "POST",
            "/api/v1/auth/logout",
            None,
            None,
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_error(
        &api.call("GET", "/api/v1/alerts", None, None, &[("cookie", &cookie)])
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

async fn wrong_passwords_are_refused_and_rate_limited(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    for _ in 0..10 {
        let r = api
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "ada", "password": "nope"})),
                &[],
            )
            .await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // Even the right password waits now.
    let r = api
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "ada", "password": "correct horse battery"})),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let r = api
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"user": "ada"})),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
}

async fn api_tokens_are_shown_once_scoped_to_their_user_and_revocable(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let (session, _, _) = api.login("vera").await;
    let r = api
        .call(
            "POST",
            "/api/v1/tokens",
            Some(&session),
            Some(json!({"name": "cmms-sync", "scopes": ["read"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let token = r.body["token"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("chitti_"));
    let listed = api
        .call("GET", "/api/v1/tokens", Some(&session), None, &[])
        .await;
    assert!(
        listed.body["items"][0].get("token").is_none(),
        "never shown again"
    );
    assert_eq!(
        api.call("GET", "/api/v1/alerts", Some(&token), None, &[])
            .await
            .status,
        StatusCode::OK
    );
    // A token acts as its (viewer) user: no more.
    assert_error(
        &api.call("GET", "/api/v1/users", Some(&token), None, &[])
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(
        api.call(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            Some(&session),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &api.call("GET", "/api/v1/alerts", Some(&token), None, &[])
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

/// A token does what its scopes allow (within its user's role), for as long as it was
/// made for, and never again once its user was disabled.
async fn a_token_is_confined_to_its_scopes_and_its_life(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let (ada, _, _) = api.login("ada").await;
    let (vera, _, _) = api.login("vera").await;
    let make = |session: String, body: Value| {
        let api = &api;
        async move {
            api.call("POST", "/api/v1/tokens", Some(&session), Some(body), &[])
                .await
        }
    };
    // The finding of the attack: a read token of an admin made an admin user.
    let r = make(ada.clone(), json!({"name": "reader", "scopes": ["read"]})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let reader = r.body["token"].as_str().unwrap().to_string();
    let expires =
        chrono::DateTime::parse_from_rfc3339(r.body["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((364..=365).contains(&days), "default life {days} days");
    assert_eq!(
        api.call("GET", "/api/v1/users", Some(&reader), None, &[])
            .await
            .status,
        StatusCode::OK
    );
    let new_admin =
        json!({"username": "mallory", "role": "admin", "password": "correct horse battery 1"});
    let r = api
        .call(
            "POST",
            "/api/v1/users",
            Some(&reader),
            Some(new_admin.clone()),
            &[],
        )
        .await;
    let message = assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert!(message.contains("lacks the `users` scope"), "{message}");
    assert!(message.contains("(it has: read)"), "{message}");
    let r = api
        .call(
            "POST",
            &format!("/api/v1/alerts/{}/acknowledge", Uuid::now_v7()),
            Some(&reader),
            None,
            &[],
        )
        .await;
    assert!(assert_error(&r, StatusCode::FORBIDDEN, "forbidden").contains("`alerts` scope"));
    // With the scope it may (the role still applies).
    let r = make(
        ada.clone(),
        json!({"name": "admin-tool", "scopes": ["read", "users"]}),
    )
    .await;
    let admin_tool = r.body["token"].as_str().unwrap().to_string();
    let r = api
        .call(
            "POST",
            "/api/v1/users",
            Some(&admin_tool),
            Some(new_admin),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // What a token may be made with.
    for (body, needle) in [
        (json!({"name": "t", "scopes": []}), "at least one scope"),
        (json!({"name": "t"}), "scopes"),
        (
            json!({"name": "t", "scopes": ["admin"]}),
            "unknown scope \"admin\"",
        ),
        (
            json!({"name": "t", "scopes": ["read", "read"]}),
            "listed twice",
        ),
        (
            json!({"name": "t", "scopes": ["read"], "expires_in_days": 366}),
            "longer than this hub allows (365",
        ),
        (
            json!({"name": "t", "scopes": ["read"], "expires_in_days": 0}),
            "at least 1",
        ),
    ] {
        let r = make(ada.clone(), body.clone()).await;
        let message = assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
        assert!(message.contains(needle), "{body}: {message}");
    }
    let r = make(
        ada.clone(),
        json!({"name": "short", "scopes": ["read"], "expires_in_days": 1}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // A disabled user's tokens stay dead when the user is enabled again.
    let r = make(
        vera.clone(),
        json!({"name": "vera-tool", "scopes": ["read"]}),
    )
    .await;
    let vera_tool = r.body["token"].as_str().unwrap().to_string();
    let users = api
        .call("GET", "/api/v1/users", Some(&ada), None, &[])
        .await;
    let vera_id = users.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "vera")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for disabled in [true, false] {
        let r = api
            .call(
                "PATCH",
                &format!("/api/v1/users/{vera_id}"),
                Some(&ada),
                Some(json!({ "disabled": disabled })),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    assert_error(
        &api.call("GET", "/api/v1/alerts", Some(&vera_tool), None, &[])
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

async fn lists_page_through_every_row_exactly_once(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let track = Uuid::now_v7();
    let findings: Vec<_> = (0..25)
        .map(|i| finding(track, 1, 40.0 + i as f64, i))
        .collect();
    api.store
        .insert_findings(&ingested(&findings, chrono::Utc::now()))
        .await
        .unwrap();
    let (vera, _, _) = api.login("vera").await;
    let mut seen = std::collections::BTreeSet::new();
    let mut uri = "/api/v1/findings?limit=7".to_string();
    loop {
        let r = api.call("GET", &uri, Some(&vera), None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        for f in r.body["items"].as_array().unwrap() {
            assert!(
                seen.insert(f["id"].as_str().unwrap().to_string()),
                "a row twice"
            );
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/findings?limit=7&after={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert_error(
        &api.call(
            "GET",
            "/api/v1/findings?after=garbage",
            Some(&vera),
            None,
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &api.call("GET", "/api/v1/findings?colour=red", Some(&vera), None, &[])
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &api.call("GET", "/api/v1/nothing-here", Some(&vera), None, &[])
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

/// Reads server-sent events off a streaming body.
struct EventReader {
    body: axum::body::BodyDataStream,
    buffer: String,
}

impl EventReader {
    async fn open(api: &Api, token: &str, query: &str, last: Option<&str>) -> Self {
        let mut req = Request::builder()
            .uri(format!("/api/v1/stream{query}"))
            .header("authorization", format!("Bearer {token}"));
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        let resp = api
            .app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Self {
            body: resp.into_body().into_data_stream(),
            buffer: String::new(),
        }
    }

    /// The next event as (id, event, data); keep-alive comments are skipped.
    async fn next(&mut self) -> (Option<String>, String, Value) {
        use futures_util::StreamExt;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if !event.is_empty() {
                    return (id, event, serde_json::from_str(&data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), self.body.next())
                .await
                .expect("an event within 30 s")
                .expect("the stream goes on")
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn the_stream_carries_alert_changes_filtered_and_resumable(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let (vera, _, _) = api.login("vera").await;
    let (otto, _, _) = api.login("otto").await;
    let mut all = EventReader::open(&api, &vera, "", None).await;
    let mut severe = EventReader::open(&api, &vera, "?min_level=4", None).await;
    let mut elsewhere = EventReader::open(&api, &vera, "?site=south-yard", None).await;

    // A new alert from stored findings (worst level 3), as ingest names it.
    let alert = api.alert().await;
    api.live.alerts_changed(vec![alert]);
    let (first_id, kind, data) = all.next().await;
    assert_eq!(kind, "alert");
    assert_eq!(data["id"], alert.to_string());
    assert_eq!(data["status"], "open");
    let first_id = first_id.unwrap();

    // An operator acknowledges it: the change is streamed.
    let r = api
        .call(
            "POST",
            &format!("/api/v1/alerts/{alert}/acknowledge"),
            Some(&otto),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let (second_id, kind, data) = all.next().await;
    assert_eq!(
        (kind.as_str(), data["status"].as_str()),
        ("alert", Some("acknowledged"))
    );

    // A level-5 alert in another site reaches the severity filter and the site filter.
    let track = Uuid::now_v7();
    let mut hot = finding(track, 5, 140.0, 0);
    hot.site = "south-yard".into();
    let report = api
        .store
        .insert_findings(&ingested(&[hot], chrono::Utc::now()))
        .await
        .unwrap();
    assert_eq!(
        report.alerts.len(),
        1,
        "the insert names the alert it created"
    );
    api.live.alerts_changed(report.alerts.clone());
    for reader in [&mut severe, &mut elsewhere, &mut all] {
        let (_, kind, data) = reader.next().await;
        assert_eq!(kind, "alert");
        assert_eq!(
            data["id"],
            report.alerts[0].to_string(),
            "level 3 alerts were filtered out"
        );
        assert_eq!(data["site"], "south-yard");
    }

    // Resuming after the first event replays exactly what came after it.
    let mut resumed = EventReader::open(&api, &vera, "", Some(&first_id)).await;
    let (id, _, data) = resumed.next().await;
    assert_eq!(id.as_deref(), second_id.as_deref());
    assert_eq!(data["status"], "acknowledged");
    let (_, _, data) = resumed.next().await;
    assert_eq!(data["site"], "south-yard");
    // An unknown id gets a resync first.
    let mut stale = EventReader::open(&api, &vera, "", Some("0-1")).await;
    assert_eq!(stale.next().await.1, "resync");
    // The stream needs a signed-in caller.
    let r = api.call("GET", "/api/v1/stream", None, None, &[]).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn action_bodies_are_checked_per_action(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let alert = api.alert().await;
    let (otto, _, _) = api.login("otto").await;
    let url = |action: &str| format!("/api/v1/alerts/{alert}/{action}");
    // A field of another action is an unknown field here.
    let r = api
        .call(
            "POST",
            &url("acknowledge"),
            Some(&otto),
            Some(json!({"assignee": "x"})),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    // An optional body may be `null`.
    let r = api
        .call(
            "POST",
            &url("acknowledge"),
            Some(&otto),
            Some(Value::Null),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "acknowledged");
    // A body must say it is JSON (415), whatever it holds; `+json` types are JSON.
    for (content_type, want) in [
        (Some("text/plain"), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (None, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            Some("application/x-www-form-urlencoded"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Some("application/merge-patch+json; charset=utf-8"),
            StatusCode::OK,
        ),
    ] {
        let mut req = Request::builder()
            .method("POST")
            .uri(url("comment"))
            .header("authorization", format!("Bearer {otto}"));
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        let resp = api
            .app
            .clone()
            .oneshot(req.body(Body::from(r#"{"note": "typed"}"#)).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{content_type:?}");
    }
    // comment and assign need theirs.
    for action in ["comment", "assign"] {
        let r = api.call("POST", &url(action), Some(&otto), None, &[]).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    }
    let r = api
        .call(
            "POST",
            &url("assign"),
            Some(&otto),
            Some(json!({"assignee": ""})),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    // A note is bounded in characters, not bytes.
    let note = "é".repeat(4000);
    let r = api
        .call(
            "POST",
            &url("comment"),
            Some(&otto),
            Some(json!({"note": note})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = api
        .call(
            "POST",
            &url("comment"),
            Some(&otto),
            Some(json!({"note": note + "é"})),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    // Ids that are not UUIDs are 400s in the error shape; the action list is closed.
    let r = api
        .call(
            "POST",
            "/api/v1/alerts/not-a-uuid/reopen",
            Some(&otto),
            None,
            &[],
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    let r = api
        .call("POST", &url("escalate"), Some(&otto), None, &[])
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = api
        .call("GET", "/api/v1/findings/nope", Some(&otto), None, &[])
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    // A JSON body without its content type is 415.
    let r = api
        .call(
            "POST",
            "/api/v1/tokens",
            Some(&otto),
            None,
            &[("content-type", "text/plain")],
        )
        .await;
    assert_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
}

async fn admins_change_roles_and_disable_users_but_not_themselves(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let (ada, _, _) = api.login("ada").await;
    let (otto, _, _) = api.login("otto").await;
    let users = api
        .call("GET", "/api/v1/users", Some(&ada), None, &[])
        .await;
    let id_of = |name: &str| {
        users.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (otto_id, ada_id) = (id_of("otto"), id_of("ada"));
    // Only admins.
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/users/{ada_id}"),
            Some(&otto),
            Some(json!({"role": "viewer"})),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/users/{otto_id}"),
            Some(&ada),
            Some(json!({"role": "admin"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["role"], "admin");
    // Disabling ends the user's sessions.
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/users/{otto_id}"),
            Some(&ada),
            Some(json!({"disabled": true})),
            &[],
        )
        .await;
    assert_eq!(r.body["disabled"], true, "{:?}", r.body);
    let r = api.call("GET", "/api/v1/me", Some(&otto), None, &[]).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    // Not one's own account, an unknown user or an unknown field.
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/users/{ada_id}"),
            Some(&ada),
            Some(json!({"disabled": true})),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/users/{}", Uuid::now_v7()),
            Some(&ada),
            Some(json!({"disabled": false})),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = api
        .call(
            "PATCH",
            &format!("/api/v1/users/{otto_id}"),
            Some(&ada),
            Some(json!({"password": "x"})),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    let audit = api.store.list_audit(10).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.event.action == "user.update")
            .count(),
        2
    );
}

async fn alert_orders_page_stably_while_alerts_arrive(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let mut before = std::collections::BTreeSet::new();
    for i in 0..13_i64 {
        let f = finding(Uuid::now_v7(), (i % 4) as u8, 40.0 + i as f64, i);
        let r = api
            .store
            .insert_findings(&ingested(&[f], support::at(i * 100)))
            .await
            .unwrap();
        before.insert(r.alerts[0].to_string());
    }
    let (vera, _, _) = api.login("vera").await;
    let mut cursors = Vec::new();
    for sort in ["created_desc", "worst_level_desc", "updated_desc"] {
        let mut seen = std::collections::BTreeSet::new();
        let mut uri = format!("/api/v1/alerts?sort={sort}&limit=3");
        let mut page = 0;
        loop {
            let r = api.call("GET", &uri, Some(&vera), None, &[]).await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            for a in r.body["items"].as_array().unwrap() {
                assert!(
                    seen.insert(a["id"].as_str().unwrap().to_string()),
                    "{sort}: twice"
                );
            }
            // A new alert between every two pages.
            page += 1;
            let f = finding(Uuid::now_v7(), (page % 4) as u8, 50.0, 1000 + page);
            api.store
                .insert_findings(&ingested(&[f], chrono::Utc::now()))
                .await
                .unwrap();
            match r.body["next_cursor"].as_str() {
                Some(c) => {
                    if page == 1 {
                        cursors.push((sort, c.to_string()));
                    }
                    uri = format!("/api/v1/alerts?sort={sort}&limit=3&after={c}");
                }
                None => break,
            }
        }
        assert!(
            before.is_subset(&seen),
            "{sort}: every alert that was there"
        );
    }
    // A cursor continues only its own order.
    for (sort, cursor) in &cursors {
        for other in ["created_desc", "worst_level_desc", "updated_desc"] {
            let r = api
                .call(
                    "GET",
                    &format!("/api/v1/alerts?sort={other}&after={cursor}"),
                    Some(&vera),
                    None,
                    &[],
                )
                .await;
            if other == *sort {
                assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            } else {
                assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
            }
        }
    }
    // The default is created_desc; an unknown order or a long search is a 400.
    let r = api
        .call(
            "GET",
            &format!("/api/v1/alerts?after={}", cursors[0].1),
            Some(&vera),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for bad in ["sort=hottest", &format!("q={}", "x".repeat(201))] {
        let r = api
            .call(
                "GET",
                &format!("/api/v1/alerts?{bad}"),
                Some(&vera),
                None,
                &[],
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    }
}

async fn search_and_track_filters_reach_the_store(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let alert = api.alert().await;
    // Another track on the same camera: not in the alert's history.
    let other = finding(Uuid::now_v7(), 2, 70.0, 5);
    let mut elsewhere = finding(Uuid::now_v7(), 1, 45.0, 6);
    elsewhere.camera = "Roof-West".into();
    api.store
        .insert_findings(&ingested(&[other, elsewhere], chrono::Utc::now()))
        .await
        .unwrap();
    let (vera, _, _) = api.login("vera").await;
    let detail = api
        .call(
            "GET",
            &format!("/api/v1/alerts/{alert}"),
            Some(&vera),
            None,
            &[],
        )
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{:?}", detail.body);
    let history = detail.body["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    let observed: Vec<chrono::DateTime<chrono::Utc>> = history
        .iter()
        .map(|h| h["observed_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(observed.windows(2).all(|w| w[0] <= w[1]), "{observed:?}");
    let track = detail.body["track_id"].as_str().unwrap();
    let r = api
        .call(
            "GET",
            &format!("/api/v1/findings?track={track}"),
            Some(&vera),
            None,
            &[],
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 3, "{:?}", r.body);
    let r = api
        .call("GET", "/api/v1/findings?q=roof-w", Some(&vera), None, &[])
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{:?}", r.body);
    assert_eq!(r.body["items"][0]["camera"], "Roof-West");
    let r = api
        .call(
            "GET",
            "/api/v1/alerts?q=ROOF&sort=worst_level_desc",
            Some(&vera),
            None,
            &[],
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{:?}", r.body);
    let r = api
        .call(
            "GET",
            "/api/v1/alerts?component_class=bushing&since=2000-01-01T00:00:00Z",
            Some(&vera),
            None,
            &[],
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 3, "{:?}", r.body);
    let r = api
        .call(
            "GET",
            "/api/v1/alerts?until=2000-01-01T00:00:00Z",
            Some(&vera),
            None,
            &[],
        )
        .await;
    assert!(
        r.body["items"].as_array().unwrap().is_empty(),
        "{:?}",
        r.body
    );
    let r = api
        .call(
            "GET",
            "/api/v1/findings?track=not-a-uuid",
            Some(&vera),
            None,
            &[],
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
}

/// A track with a cool exception (a phase far colder than its sibling) makes an alert
/// that says so, whatever batch the cool finding came in; a hot track's does not.
async fn alerts_say_when_their_track_is_a_cool_exception(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.spawn_publisher();
    let (vera, _, _) = api.login("vera").await;
    let store = |fs: Vec<chitti_common::finding::Finding>| {
        let store = api.store.clone();
        async move {
            store
                .insert_findings(&ingested(&fs, chrono::Utc::now()))
                .await
                .unwrap();
        }
    };
    let list = || async {
        let r = api
            .call("GET", "/api/v1/alerts?limit=100", Some(&vera), None, &[])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body["items"].as_array().unwrap().clone()
    };
    let of = |items: &[Value], track: Uuid| -> Value {
        items
            .iter()
            .find(|a| a["track_id"] == track.to_string())
            .cloned()
            .unwrap_or_else(|| panic!("an alert for track {track}: {items:?}"))
    };
    let (cool, hot, mixed) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

    // A level-0 finding that is not a cool exception: the alert is not one yet.
    store(vec![finding(cool, 0, 24.0, 0)]).await;
    assert_eq!(of(&list().await, cool)["cool_exception"], false);

    // The cool finding arrives in a later batch (merged into the stored row), beside a
    // hot track and a track whose plain finding precedes its cool one in the batch.
    let mut plain = finding(mixed, 0, 25.0, 10);
    plain.severity.table = "neta-similar".into();
    store(vec![
        cool_finding(cool, 21.5, 14.0, 100),
        finding(hot, 2, 70.0, 100),
        plain,
        cool_finding(mixed, 22.0, 12.0, 110),
    ])
    .await;
    // A later plain finding does not undo it.
    store(vec![finding(cool, 0, 23.0, 200)]).await;

    let items = list().await;
    let a = of(&items, cool);
    assert_eq!(a["cool_exception"], true, "{a}");
    assert_eq!(
        (a["worst_level"].as_u64(), a["finding_count"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(of(&items, mixed)["cool_exception"], true);
    let h = of(&items, hot);
    assert_eq!(
        (h["cool_exception"].clone(), h["worst_level"].clone()),
        (json!(false), json!(2))
    );

    // The alert itself, and its history finding by finding.
    let id = a["id"].as_str().unwrap();
    let d = api
        .call(
            "GET",
            &format!("/api/v1/alerts/{id}"),
            Some(&vera),
            None,
            &[],
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{:?}", d.body);
    assert_eq!(d.body["cool_exception"], true);
    let history: Vec<bool> = d.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["cool_exception"].as_bool().unwrap())
        .collect();
    assert_eq!(history, [false, true, false]);

    // The hot track's alert and history say false.
    let r = api
        .call(
            "GET",
            &format!("/api/v1/alerts/{}", h["id"].as_str().unwrap()),
            Some(&vera),
            None,
            &[],
        )
        .await;
    assert_eq!(r.body["cool_exception"], false);
    assert_eq!(r.body["history"][0]["cool_exception"], false);
}

async fn dead_letters_are_listed_escaped_filtered_and_downloadable_by_role(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let hostile = b"<script>alert(1)</script>\x00\xff".to_vec();
    for (topic, reason, payload) in [
        (
            "chitti/v1/north-yard/gw-07/findings",
            "signature: no valid signature",
            hostile.clone(),
        ),
        (
            "chitti/v1/north-yard/gw-08/findings",
            "schema: missing field `id`",
            b"{}".to_vec(),
        ),
        (
            "chitti/v1/north-yard/gw-07/findings",
            "signature: no valid signature",
            vec![b'x'; 2000],
        ),
    ] {
        api.store
            .record_dead_letter(&DeadLetter {
                received_at: chrono::Utc::now(),
                topic: topic.into(),
                reason: reason.into(),
                payload,
            })
            .await
            .unwrap();
    }
    let (vera, otto, ada) = (
        api.bearer("vera").await,
        api.bearer("otto").await,
        api.bearer("ada").await,
    );
    assert_error(
        &api.get("/api/v1/dead-letters", Some(&vera), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let all = api
        .ok(StatusCode::OK, "GET", "/api/v1/dead-letters", &otto, None)
        .await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let long = &items[0];
    assert_eq!(long["payload_bytes"], 2000);
    assert_eq!(long["payload_truncated"], true);
    assert_eq!(long["payload_preview"].as_str().unwrap().len(), 500);
    let escaped = &items[2];
    assert_eq!(
        escaped["payload_preview"], "<script>alert(1)</script>\\u{0}\\xff",
        "control and invalid bytes escaped (the dashboard escapes the HTML)"
    );
    assert_eq!(
        (&escaped["class"], &escaped["site"], &escaped["gateway"]),
        (&json!("signature"), &json!("north-yard"), &json!("gw-07"))
    );

    let gw07 = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/dead-letters?gateway=gw-07&class=signature&limit=1",
            &otto,
            None,
        )
        .await;
    assert_eq!(gw07["items"].as_array().unwrap().len(), 1);
    let next = gw07["next_cursor"].as_str().unwrap();
    let rest = api
        .ok(
            StatusCode::OK,
            "GET",
            &format!("/api/v1/dead-letters?gateway=gw-07&class=signature&limit=1&after={next}"),
            &otto,
            None,
        )
        .await;
    assert_eq!(rest["items"][0]["id"], escaped["id"]);
    assert!(rest["next_cursor"].is_null());
    assert_error(
        &api.get("/api/v1/dead-letters?after=zz", Some(&otto), None)
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &api.get("/api/v1/dead-letters?reason=x", Some(&otto), None)
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    let groups = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/dead-letters/groups",
            &otto,
            None,
        )
        .await;
    assert_eq!(
        groups["items"][0],
        json!({"class": "signature", "site": "north-yard", "gateway": "gw-07", "count": 2,
               "last_at": groups["items"][0]["last_at"]})
    );
    assert_eq!(groups["items"][1]["count"], 1);

    // The raw bytes: an admin's download, never inline.
    let id = escaped["id"].as_i64().unwrap();
    let uri = format!("/api/v1/dead-letters/{id}/payload");
    assert_error(
        &api.get(&uri, Some(&otto), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let raw = api.get(&uri, Some(&ada), None).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.bytes, hostile);
    assert_eq!(raw.content_type(), "application/octet-stream");
    assert!(raw
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
    assert_error(
        &api.get("/api/v1/dead-letters/999999/payload", Some(&ada), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.get("/api/v1/dead-letters/x/payload", Some(&ada), None)
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    // The page: counts, then letters with the payload escaped as HTML too; the
    // download link for admins only; viewers are refused.
    let (_, _, otto_cookie) = api.login("otto").await;
    let html = api.page("/dead-letters?gateway=gw-07", &otto_cookie).await;
    assert!(html.contains("id=\"group-table\""), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;\\u{0}\\xff"));
    assert!(!html.contains("<script>alert(1)"));
    assert!(!html.contains("gw-08/findings"), "filtered by gateway");
    assert!(!html.contains("/payload\""), "no download for operators");
    let (_, _, ada_cookie) = api.login("ada").await;
    let html = api.page("/dead-letters", &ada_cookie).await;
    assert!(html.contains(&format!("/api/v1/dead-letters/{id}/payload")));
    let (_, _, vera_cookie) = api.login("vera").await;
    let (status, _) = api.page_reply("/dead-letters", &vera_cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

support::on_both!(
    the_audit_trail_records_sign_ins_and_is_filtered_exported_and_admin_only,
    a_departed_user_is_pseudonymised_and_the_chain_still_verifies,
    each_role_may_do_exactly_what_it_should,
    the_lifecycle_refuses_invalid_transitions_with_409,
    cookie_sessions_need_csrf_tokens_and_logout_ends_them,
    wrong_passwords_are_refused_and_rate_limited,
    api_tokens_are_shown_once_scoped_to_their_user_and_revocable,
    a_token_is_confined_to_its_scopes_and_its_life,
    lists_page_through_every_row_exactly_once,
    the_stream_carries_alert_changes_filtered_and_resumable,
    action_bodies_are_checked_per_action,
    admins_change_roles_and_disable_users_but_not_themselves,
    alert_orders_page_stably_while_alerts_arrive,
    search_and_track_filters_reach_the_store,
    alerts_say_when_their_track_is_a_cool_exception,
    dead_letters_are_listed_escaped_filtered_and_downloadable_by_role
);

async fn the_audit_trail_records_sign_ins_and_is_filtered_exported_and_admin_only(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let (otto, ada) = (api.bearer("otto").await, api.bearer("ada").await);
    // A wrong password, an unknown name and a name no account can have: all recorded.
    for (username, reason) in [
        ("otto", "wrong password"),
        ("=cmd|calc!A0", "unknown user"),
        ("no such name", "not a possible user name"),
    ] {
        let r = api
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": username, "password": "wrong"})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{username}");
        let last = api.last_audited().await.event;
        assert_eq!(
            (last.action.as_str(), last.detail["reason"].as_str()),
            ("auth.login_failed", Some(reason))
        );
    }
    let created = api
        .ok(
            StatusCode::CREATED,
            "POST",
            "/api/v1/users",
            &ada,
            Some(json!({"username": "eve", "password": "correct horse battery", "role": "viewer"})),
        )
        .await;
    assert_eq!(created["username"], "eve");

    assert_error(
        &api.get("/api/v1/audit", Some(&otto), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let all = api
        .ok(StatusCode::OK, "GET", "/api/v1/audit", &ada, None)
        .await;
    let items = all["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "user.add",
            "auth.login_failed",
            "auth.login_failed",
            "auth.login_failed",
            "auth.login",
            "auth.login"
        ]
    );
    let newest = &items[0];
    assert_eq!(
        (
            &newest["actor"],
            &newest["target"],
            &newest["detail"]["role"]
        ),
        (&json!("ada"), &json!("eve"), &json!("viewer"))
    );
    assert_eq!(newest["seq"], 6);
    assert_eq!(newest["hash"].as_str().unwrap().len(), 64);
    assert_eq!(newest["pseudonymised"], false);

    let failed = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/audit?action=auth.login_failed&target=otto",
            &ada,
            None,
        )
        .await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    let family = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/audit?action=auth.*&limit=2",
            &ada,
            None,
        )
        .await;
    assert_eq!(family["items"].as_array().unwrap().len(), 2);
    let next = family["next_cursor"].as_str().unwrap();
    let rest = api
        .ok(
            StatusCode::OK,
            "GET",
            &format!("/api/v1/audit?action=auth.*&limit=2&after={next}"),
            &ada,
            None,
        )
        .await;
    let seqs: Vec<i64> = family["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [5, 4, 3, 2]);
    let none = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/audit?actor=ada&until=2000-01-01T00:00:00Z",
            &ada,
            None,
        )
        .await;
    assert!(none["items"].as_array().unwrap().is_empty());
    for bad in [
        "/api/v1/audit?after=zz",
        "/api/v1/audit?who=ada",
        "/api/v1/audit?since=yesterday",
    ] {
        assert_error(
            &api.get(bad, Some(&ada), None).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
    }

    // CSV: a header, every matching row, a formula-looking name defused.
    let csv = api
        .get(
            "/api/v1/audit/export.csv?action=auth.login_failed",
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let mut reader = ::csv::Reader::from_reader(csv.bytes.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        chitti_hub::api::audit::AUDIT_COLUMNS
    );
    let rows: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        &rows[0][2], "",
        "a name no account can have is not recorded"
    );
    assert_eq!(&rows[1][2], "'=cmd|calc!A0");
    assert_eq!(&rows[1][3], "auth.login_failed");
    let detail: serde_json::Value = serde_json::from_str(&rows[2][6]).unwrap();
    assert_eq!(detail["reason"], "wrong password");
    assert_eq!(
        api.get("/api/v1/audit/export.csv", Some(&otto), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // The page: admins only, what it shows escaped, in the navigation for admins.
    api.store
        .audit(&AuditEvent {
            at: chrono::Utc::now(),
            actor: "system".into(),
            action: "user.note".into(),
            target: "<b>eve</b>".into(),
            from_address: None,
            detail: json!({"html": "<i>x</i>"}),
        })
        .await
        .unwrap();
    let (_, _, ada_cookie) = api.login("ada").await;
    let html = api.page("/audit?action=user.*", &ada_cookie).await;
    assert!(html.contains("id=\"audit-table\""), "{html}");
    assert!(html.contains("&lt;b&gt;eve&lt;/b&gt;"));
    assert!(!html.contains("<b>eve</b>") && !html.contains("<i>x</i>"));
    assert!(
        !html.contains("auth.login_failed</code>"),
        "filtered by action family"
    );
    assert!(
        html.contains("href=\"/api/v1/audit/export.csv?action=user.*\"")
            || html.contains("export.csv?action=user.%2A"),
        "{html}"
    );
    let (_, _, otto_cookie) = api.login("otto").await;
    let (status, _) = api.page_reply("/audit", &otto_cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!api
        .page("/alerts", &otto_cookie)
        .await
        .contains("href=\"/audit\""));
    assert!(api
        .page("/alerts", &ada_cookie)
        .await
        .contains("href=\"/audit\""));

    // Signing out is recorded too; the chain holds.
    api.ok(
        StatusCode::NO_CONTENT,
        "POST",
        "/api/v1/auth/logout",
        &otto,
        None,
    )
    .await;
    assert_eq!(api.last_audited().await.event.action, "auth.logout");
    assert!(api.store.verify_audit_chain().await.unwrap().is_intact());
}

async fn a_departed_user_is_pseudonymised_and_the_chain_still_verifies(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let (vera, ada) = (api.bearer("vera").await, api.bearer("ada").await);
    let vera_id = api
        .store
        .user_by_username("vera")
        .await
        .unwrap()
        .unwrap()
        .id;
    let uri = format!("/api/v1/users/{vera_id}/pseudonymise");
    assert_error(
        &api.call("POST", &uri, Some(&vera), None, &[]).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &api.call("POST", &uri, Some(&ada), None, &[]).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    api.ok(
        StatusCode::OK,
        "PATCH",
        &format!("/api/v1/users/{vera_id}"),
        &ada,
        Some(json!({"disabled": true})),
    )
    .await;
    let done = api.ok(StatusCode::OK, "POST", &uri, &ada, None).await;
    let pseudonym = done["pseudonym"].as_str().unwrap().to_string();
    assert!(pseudonym.starts_with("former-user-"), "{done}");
    // Her sign-in (actor and target) and the disabling (target).
    assert_eq!(done["audit_rows"], 3);
    let log = api
        .ok(StatusCode::OK, "GET", "/api/v1/audit?limit=100", &ada, None)
        .await;
    let text = log.to_string();
    assert!(!text.contains("\"vera\""), "{text}");
    let hers = api
        .ok(
            StatusCode::OK,
            "GET",
            &format!("/api/v1/audit?actor={pseudonym}"),
            &ada,
            None,
        )
        .await;
    let hers = hers["items"].as_array().unwrap();
    assert_eq!(hers.len(), 1);
    assert_eq!(
        (&hers[0]["pseudonymised"], &hers[0]["from_address"]),
        (&json!(true), &json!(null))
    );
    assert_eq!(log["items"][0]["action"], "user.pseudonymise");
    assert!(api.store.verify_audit_chain().await.unwrap().is_intact());
    assert_error(
        &api.call(
            "POST",
            "/api/v1/users/not-a-uuid/pseudonymise",
            Some(&ada),
            None,
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &api.call(
            "POST",
            &format!("/api/v1/users/{}/pseudonymise", Uuid::nil()),
            Some(&ada),
            None,
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}
