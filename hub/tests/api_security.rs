//! A person's own account security through the API, on both stores: a password change
//! needs the current one and ends the other sessions; sessions are listed and ended by
//! their owner and by admins; an admin's reset link works once, for an enabled
//! account; an admin exports a person's data; the account and reset pages.

mod support;

use axum::http::StatusCode;
use chitti_hub::store::prelude::*;
use serde_json::{json, Value};
use support::{assert_error, Api, PASSWORD};

const NEW_PASSWORD: &str = "a brand new passphrase";

async fn sign_in(api: &Api, user: &str, password: &str) -> (StatusCode, Value) {
    let r = api
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": user, "password": password})),
            &[],
        )
        .await;
    (r.status, r.body)
}

async fn me(api: &Api, token: &str) -> StatusCode {
    api.get("/api/v1/me", Some(token), None).await.status
}

async fn user_id(api: &Api, name: &str) -> String {
    api.store
        .user_by_username(name)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string()
}

async fn a_password_change_needs_the_current_one_and_ends_other_sessions(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let (here, there) = (api.bearer("otto").await, api.bearer("otto").await);
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    assert_error(
        &api.call(
            "POST",
            "/api/v1/me/password",
            Some(&here),
            Some(change("wrong one", NEW_PASSWORD)),
            &[],
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &api.call(
            "POST",
            "/api/v1/me/password",
            Some(&here),
            Some(change(PASSWORD, "short")),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_eq!(
        me(&api, &there).await,
        StatusCode::OK,
        "nothing changed yet"
    );
    api.ok(
        StatusCode::NO_CONTENT,
        "POST",
        "/api/v1/me/password",
        &here,
        Some(change(PASSWORD, NEW_PASSWORD)),
    )
    .await;
    assert_eq!(
        me(&api, &here).await,
        StatusCode::OK,
        "the session that changed it stays"
    );
    assert_eq!(
        me(&api, &there).await,
        StatusCode::UNAUTHORIZED,
        "the other one ended"
    );
    assert_eq!(
        sign_in(&api, "otto", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(sign_in(&api, "otto", NEW_PASSWORD).await.0, StatusCode::OK);

    // An API token cannot change its user's password.
    let token = api
        .ok(
            StatusCode::CREATED,
            "POST",
            "/api/v1/tokens",
            &here,
            Some(json!({"name": "ci", "scopes": ["read", "users"]})),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_error(
        &api.call(
            "POST",
            "/api/v1/me/password",
            Some(&token),
            Some(change(NEW_PASSWORD, "yet another passphrase")),
            &[],
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let actions: Vec<String> = api
        .audit_log()
        .await
        .iter()
        .map(|r| r.event.action.clone())
        .collect();
    assert!(
        actions.contains(&"user.password".to_string()),
        "{actions:?}"
    );
    let failed = api.store.list_audit(100).await.unwrap();
    assert!(failed
        .iter()
        .any(|r| r.event.action == "auth.password_change_failed"));
}

async fn sessions_are_listed_and_ended_by_their_owner_and_admins(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let (here, there) = (api.bearer("otto").await, api.bearer("otto").await);
    let (vera, ada) = (api.bearer("vera").await, api.bearer("ada").await);
    let listed = api
        .ok(StatusCode::OK, "GET", "/api/v1/me/sessions", &here, None)
        .await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(!listed.to_string().contains(&here) && !listed.to_string().contains("csrf"));
    let other = items.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Not someone else's.
    assert_error(
        &api.call(
            "DELETE",
            &format!("/api/v1/me/sessions/{other}"),
            Some(&vera),
            None,
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    api.ok(
        StatusCode::NO_CONTENT,
        "DELETE",
        &format!("/api/v1/me/sessions/{other}"),
        &here,
        None,
    )
    .await;
    assert_eq!(me(&api, &there).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me(&api, &here).await, StatusCode::OK);

    let otto = user_id(&api, "otto").await;
    let uri = format!("/api/v1/users/{otto}/sessions");
    assert_error(
        &api.get(&uri, Some(&vera), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let theirs = api.ok(StatusCode::OK, "GET", &uri, &ada, None).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 1);
    api.ok(StatusCode::NO_CONTENT, "DELETE", &uri, &ada, None)
        .await;
    assert_eq!(me(&api, &here).await, StatusCode::UNAUTHORIZED);
    let ended: Vec<String> = api
        .audit_log()
        .await
        .iter()
        .map(|r| r.event.action.clone())
        .collect();
    assert_eq!(ended, ["session.end", "session.end_all"]);
}

async fn a_reset_link_works_once_for_an_enabled_account(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let (vera_session, ada) = (api.bearer("vera").await, api.bearer("ada").await);
    let vera = user_id(&api, "vera").await;
    let uri = format!("/api/v1/users/{vera}/reset-link");
    assert_error(
        &api.call("POST", &uri, Some(&vera_session), None, &[]).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let link = api.ok(StatusCode::CREATED, "POST", &uri, &ada, None).await;
    let token = link["token"].as_str().unwrap().to_string();
    assert_eq!(link["path"], format!("/reset#token={token}"));
    let reset = |token: &str, password: &str| json!({"token": token, "new_password": password});
    assert_error(
        &api.call(
            "POST",
            "/api/v1/auth/reset",
            None,
            Some(reset("chr_unknown", NEW_PASSWORD)),
            &[],
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &api.call(
            "POST",
            "/api/v1/auth/reset",
            None,
            Some(reset(&token, "short")),
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let r = api
        .call(
            "POST",
            "/api/v1/auth/reset",
            None,
            Some(reset(&token, NEW_PASSWORD)),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_error(
        &api.call(
            "POST",
            "/api/v1/auth/reset",
            None,
            Some(reset(&token, "another passphrase!")),
            &[],
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_eq!(
        me(&api, &vera_session).await,
        StatusCode::UNAUTHORIZED,
        "sessions ended"
    );
    assert_eq!(
        sign_in(&api, "vera", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(sign_in(&api, "vera", NEW_PASSWORD).await.0, StatusCode::OK);

    // A link issued, then the account disabled: the link does not work.
    let link = api.ok(StatusCode::CREATED, "POST", &uri, &ada, None).await;
    api.ok(
        StatusCode::OK,
        "PATCH",
        &format!("/api/v1/users/{vera}"),
        &ada,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_error(
        &api.call(
            "POST",
            "/api/v1/auth/reset",
            None,
            Some(reset(
                link["token"].as_str().unwrap(),
                "yet another passphrase",
            )),
            &[],
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &api.call("POST", &uri, Some(&ada), None, &[]).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let actions: Vec<String> = api
        .audit_log()
        .await
        .iter()
        .map(|r| r.event.action.clone())
        .collect();
    assert_eq!(
        actions,
        [
            "user.reset_link",
            "user.password_reset",
            "user.reset_link",
            "user.update"
        ]
    );
    // Never the token itself.
    assert!(!format!("{:?}", api.store.list_audit(100).await.unwrap()).contains(&token));

    // Guessing is limited (per address): ten failed uses a minute (three above), then 429.
    let guess = |n: usize| reset(&format!("chr_guess{n}"), "a long enough guess");
    let mut statuses = Vec::new();
    for n in 0..9 {
        let r = api
            .call("POST", "/api/v1/auth/reset", None, Some(guess(n)), &[])
            .await;
        statuses.push(r.status);
    }
    let mut expected = vec![StatusCode::UNAUTHORIZED; 7];
    expected.extend([StatusCode::TOO_MANY_REQUESTS; 2]);
    assert_eq!(statuses, expected);
}

async fn an_admin_exports_a_persons_data(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let (otto, ada, vera) = (
        api.bearer("otto").await,
        api.bearer("ada").await,
        api.bearer("vera").await,
    );
    let alert = api.alert().await;
    api.ok(
        StatusCode::OK,
        "POST",
        &format!("/api/v1/alerts/{alert}/acknowledge"),
        &otto,
        None,
    )
    .await;
    api.ok(
        StatusCode::CREATED,
        "POST",
        "/api/v1/tokens",
        &otto,
        Some(json!({"name": "laptop", "scopes": ["read"]})),
    )
    .await;
    let uri = format!("/api/v1/users/{}/export", user_id(&api, "otto").await);
    assert_error(
        &api.get(&uri, Some(&vera), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let data = api.ok(StatusCode::OK, "GET", &uri, &ada, None).await;
    assert_eq!(data["user"]["username"], "otto");
    assert_eq!(data["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(data["tokens"][0]["name"], "laptop");
    assert!(data["tokens"][0].get("token").is_none());
    let actions: Vec<&str> = data["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["auth.login", "token.add"]);
    assert_eq!(data["alert_actions"][0]["kind"], "acknowledge");
    assert_eq!(api.last_audited().await.event.action, "user.export");
}

async fn the_account_and_reset_pages(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let (_, _, cookie) = api.login("otto").await;
    let html = api.page("/account", &cookie).await;
    assert!(html.contains("id=\"password-form\""), "{html}");
    assert!(html.contains("id=\"session-table\"") && html.contains("(this one)"));
    for scope in ["read", "alerts", "sites", "gateways", "uploads", "users"] {
        assert!(html.contains(&format!("value=\"{scope}\"")), "{scope}");
    }
    assert!(
        html.contains("handheld inspections: upload"),
        "scopes explained"
    );
    assert!(
        html.contains("href=\"/account\""),
        "the name in the header links here"
    );
    let (status, html) = api.page_reply("/reset", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("id=\"reset-form\""));
}

support::on_both!(
    a_password_change_needs_the_current_one_and_ends_other_sessions,
    sessions_are_listed_and_ended_by_their_owner_and_admins,
    a_reset_link_works_once_for_an_enabled_account,
    an_admin_exports_a_persons_data,
    the_account_and_reset_pages,
);
