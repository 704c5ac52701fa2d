//! Sites, structures, assets, gateways and cameras through the API at router level
//! (`Router::oneshot`), on SQLite and Postgres: who may do what, the hierarchy's round
//! trips, the 400/404/409 refusals, the audit log, gateway health and revocation.

mod support;

use axum::http::StatusCode;
use chitti_common::protocol::{AgentStatus, BufferStatus, CameraStatus, EvictionCounts};
use chitti_hub::live::{Change, LiveEvents};
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AuditRecord, StatusOutcome};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use std::sync::Arc;
use support::{Api, Reply, Users};

fn assert_error(r: &Reply, status: StatusCode, code: &str, mentions: &str) {
    let message = r.error(status, code);
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

fn actions(log: &[AuditRecord]) -> Vec<&str> {
    log.iter().map(|r| r.event.action.as_str()).collect()
}

fn status(
    online: bool,
    cameras: Vec<CameraStatus>,
    buffer: Option<BufferStatus>,
    ts: DateTime<Utc>,
) -> AgentStatus {
    AgentStatus {
        online,
        agent_version: "0.4.2".into(),
        cameras,
        buffer,
        model: online.then(|| chitti_common::finding::ModelIdentity {
            name: "yolo-thermal".into(),
            version: "3".into(),
            sha256: "cd".repeat(32),
        }),
        detector: online.then(|| "degraded (model /opt/chitti/model.onnx: not found)".into()),
        config_version: online.then_some(7),
        model_update: None,
        evidence: None,
        ts,
        session: Some(ts),
    }
}

fn camera(id: &str, state: &str, last: Option<DateTime<Utc>>) -> CameraStatus {
    CameraStatus {
        id: id.into(),
        state: state.into(),
        fps: 8.5,
        last_frame_at: last,
    }
}

/// A gateway enrolled in `north-yard` (which creates the site), and through the API a
/// bay with an asset on it.
async fn fixtures(api: &Api) {
    api.enrol("north-yard", "gw-07").await;
    let ada = api.bearer("ada").await;
    api.ok(
        StatusCode::CREATED,
        "POST",
        "/api/v1/sites/north-yard/structures",
        &ada,
        Some(json!({"id": "bay-3", "name": "Bay 3", "kind": "bay"})),
    )
    .await;
    api.ok(
        StatusCode::CREATED,
        "POST",
        "/api/v1/sites/north-yard/assets",
        &ada,
        Some(json!({
            "id": "bay3-breaker-b",
            "name": "Breaker B",
            "structure": "bay-3",
            "phase": "B",
            "component_class": "bushing",
        })),
    )
    .await;
}

async fn each_role_may_do_exactly_what_it_should(backend: &str) {
    let (api, _db) = Api::with(backend, Users::SignIn, |state| {
        state.with_live(Arc::new(LiveEvents::new(16)))
    })
    .await;
    fixtures(&api).await;
    let audited_before = api.audit_log().await.len();
    let tokens = [
        api.bearer("vera").await,
        api.bearer("otto").await,
        api.bearer("ada").await,
    ];
    const READ: [bool; 3] = [true, true, true];
    const ADMIN: [bool; 3] = [false, false, true];
    let site = "/api/v1/sites/north-yard";
    // In order: what admins create here, they delete further down.
    let cases: Vec<(&str, String, Option<Value>, [bool; 3])> = vec![
        ("GET", "/api/v1/sites".into(), None, READ),
        (
            "POST",
            "/api/v1/sites".into(),
            Some(json!({"id": "south-yard", "name": "South yard", "kind": "line"})),
            ADMIN,
        ),
        ("GET", site.into(), None, READ),
        ("PATCH", site.into(), Some(json!({"name": "North"})), ADMIN),
        ("GET", format!("{site}/structures"), None, READ),
        (
            "POST",
            format!("{site}/structures"),
            Some(json!({"id": "tower-9", "name": "Tower 9", "kind": "tower"})),
            ADMIN,
        ),
        ("GET", format!("{site}/structures/bay-3"), None, READ),
        (
            "PATCH",
            format!("{site}/structures/bay-3"),
            Some(json!({"name": "Bay three"})),
            ADMIN,
        ),
        ("GET", format!("{site}/assets"), None, READ),
        (
            "POST",
            format!("{site}/assets"),
            Some(json!({"id": "ct-9", "name": "CT 9"})),
            ADMIN,
        ),
        ("GET", format!("{site}/assets/bay3-breaker-b"), None, READ),
        (
            "PATCH",
            format!("{site}/assets/bay3-breaker-b"),
            Some(json!({"phase": "C"})),
            ADMIN,
        ),
        ("DELETE", format!("{site}/assets/ct-9"), None, ADMIN),
        ("DELETE", format!("{site}/structures/tower-9"), None, ADMIN),
        ("DELETE", "/api/v1/sites/south-yard".into(), None, ADMIN),
        ("GET", "/api/v1/gateways".into(), None, READ),
        (
            "GET",
            "/api/v1/gateways/north-yard/gw-07".into(),
            None,
            READ,
        ),
        ("GET", "/api/v1/cameras".into(), None, READ),
        (
            "POST",
            "/api/v1/gateways/north-yard/gw-07/revoke".into(),
            None,
            ADMIN,
        ),
    ];
    for (method, path, body, allowed) in &cases {
        // Nobody signed in: 401, before anything else is looked at.
        let r = api.call(method, path, None, body.clone(), &[]).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized", "sign in");
        for (role, token) in tokens.iter().enumerate() {
            let r = api.call(method, path, Some(token), body.clone(), &[]).await;
            if allowed[role] {
                assert!(
                    r.status.is_success(),
                    "{method} {path} as role {role}: {} {:?}",
                    r.status,
                    r.body
                );
            } else {
                assert_error(&r, StatusCode::FORBIDDEN, "forbidden", "admin role");
            }
        }
    }
    // Each change the admin made is in the audit log once, as the admin; the refused
    // attempts left nothing.
    let log = api.audit_log().await;
    let changes: Vec<_> = log[audited_before..].iter().collect();
    let expected = [
        "site.create",
        "site.update",
        "structure.create",
        "structure.update",
        "asset.create",
        "asset.update",
        "asset.delete",
        "structure.delete",
        "site.delete",
        "gateway.revoke",
    ];
    assert_eq!(
        changes
            .iter()
            .map(|r| r.event.action.as_str())
            .collect::<Vec<_>>(),
        expected
    );
    assert!(changes.iter().all(|r| r.event.actor == "ada"));
}

async fn the_hierarchy_round_trips(backend: &str) {
    let (api, _db) = Api::with(backend, Users::SignIn, |state| {
        state.with_live(Arc::new(LiveEvents::new(16)))
    })
    .await;
    let ada = api.bearer("ada").await;
    let vera = api.bearer("vera").await;
    let created = api
        .ok(
            StatusCode::CREATED,
            "POST",
            "/api/v1/sites",
            &ada,
            Some(json!({"id": "north-yard", "name": "  North yard 220 kV ", "kind": "substation"})),
        )
        .await;
    assert_eq!(created["id"], "north-yard");
    assert_eq!(created["name"], "North yard 220 kV", "trimmed");
    assert_eq!(created["kind"], "substation");
    for (id, kind) in [("bay-1", "bay"), ("bay-2", "bay"), ("tower-1", "tower")] {
        let st = api
            .ok(
                StatusCode::CREATED,
                "POST",
                "/api/v1/sites/north-yard/structures",
                &ada,
                Some(json!({"id": id, "name": id.to_uppercase(), "kind": kind})),
            )
            .await;
        assert_eq!(
            (st["site"].as_str(), st["kind"].as_str()),
            (Some("north-yard"), Some(kind))
        );
    }
    let assets = [
        (
            "ct-a",
            Some("bay-1"),
            Some("A"),
            Some("current-transformer"),
        ),
        (
            "ct-b",
            Some("bay-1"),
            Some("B"),
            Some("current-transformer"),
        ),
        ("bushing-a", Some("bay-2"), Some("A"), Some("bushing")),
        ("yard-light", None, None, None),
    ];
    for (id, structure, phase, class) in assets {
        let a = api
            .ok(
                StatusCode::CREATED,
                "POST",
                "/api/v1/sites/north-yard/assets",
                &ada,
                Some(json!({
                    "id": id,
                    "name": format!("Asset {id}"),
                    "structure": structure,
                    "phase": phase,
                    "component_class": class,
                })),
            )
            .await;
        assert_eq!(a["structure"], json!(structure));
        assert_eq!(a["phase"], json!(phase));
    }

    // The site shows the hierarchy: structures by id, each with its assets.
    let detail = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/sites/north-yard",
            &vera,
            None,
        )
        .await;
    assert_eq!(detail["name"], "North yard 220 kV");
    let tree: Vec<(String, Vec<String>)> = detail["structures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["assets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["id"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        tree,
        [
            (
                "bay-1".to_string(),
                vec!["ct-a".to_string(), "ct-b".to_string()]
            ),
            ("bay-2".to_string(), vec!["bushing-a".to_string()]),
            ("tower-1".to_string(), vec![]),
        ]
    );
    assert_eq!(detail["assets_without_structure"][0]["id"], "yard-light");
    assert_eq!(detail["structures"][0]["kind"], "bay");

    // Filters combine.
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let base = "/api/v1/sites/north-yard/assets";
    for (query, expected) in [
        ("", vec!["bushing-a", "ct-a", "ct-b", "yard-light"]),
        ("?structure=bay-1", vec!["ct-a", "ct-b"]),
        ("?phase=A", vec!["bushing-a", "ct-a"]),
        ("?component_class=current-transformer&phase=B", vec!["ct-b"]),
        (
            "?structure=bay-2&component_class=current-transformer",
            vec![],
        ),
        ("?structure=bay-404", vec![]),
    ] {
        let r = api
            .ok(
                StatusCode::OK,
                "GET",
                &format!("{base}{query}"),
                &vera,
                None,
            )
            .await;
        assert_eq!(ids(&r), expected, "{query}");
        assert_eq!(r["next_cursor"], Value::Null);
    }

    // PATCH changes only what it names; null clears.
    let moved = api
        .ok(
            StatusCode::OK,
            "PATCH",
            &format!("{base}/ct-b"),
            &ada,
            Some(json!({"structure": "bay-2", "phase": null})),
        )
        .await;
    assert_eq!(moved["structure"], "bay-2");
    assert_eq!(moved["phase"], Value::Null);
    assert_eq!(moved["name"], "Asset ct-b", "kept");
    assert_eq!(moved["component_class"], "current-transformer", "kept");
    let read = api
        .ok(StatusCode::OK, "GET", &format!("{base}/ct-b"), &vera, None)
        .await;
    assert_eq!(read, moved, "what PATCH answers is what is stored");
    let unplaced = api
        .ok(
            StatusCode::OK,
            "PATCH",
            &format!("{base}/ct-a"),
            &ada,
            Some(json!({"structure": null, "name": "CT A (spare)"})),
        )
        .await;
    assert_eq!(unplaced["structure"], Value::Null);
    assert_eq!(unplaced["phase"], "A", "kept");
    let st = api
        .ok(
            StatusCode::OK,
            "PATCH",
            "/api/v1/sites/north-yard/structures/tower-1",
            &ada,
            Some(json!({"kind": "bay"})),
        )
        .await;
    assert_eq!(
        (st["kind"].as_str(), st["name"].as_str()),
        (Some("bay"), Some("TOWER-1"))
    );
    let site = api
        .ok(
            StatusCode::OK,
            "PATCH",
            "/api/v1/sites/north-yard",
            &ada,
            Some(json!({"kind": "line"})),
        )
        .await;
    assert_eq!(
        (site["kind"].as_str(), site["name"].as_str()),
        (Some("line"), Some("North yard 220 kV"))
    );
    let listed = api
        .ok(StatusCode::OK, "GET", "/api/v1/sites", &vera, None)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["kind"], "line");
    let detail = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/sites/north-yard",
            &vera,
            None,
        )
        .await;
    assert_eq!(
        detail["structures"][0]["assets"],
        json!([]),
        "bay-1 emptied"
    );
    assert_eq!(
        detail["structures"][1]["assets"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        detail["assets_without_structure"].as_array().unwrap().len(),
        2
    );

    // The audit log has every change with before and after.
    let log = api.audit_log().await;
    let update = log
        .iter()
        .find(|r| r.event.action == "asset.update" && r.event.target == "north-yard/ct-b")
        .unwrap();
    assert_eq!(update.event.actor, "ada");
    assert_eq!(update.event.detail["before"]["structure"], "bay-1");
    assert_eq!(update.event.detail["before"]["phase"], "B");
    assert_eq!(update.event.detail["after"]["structure"], "bay-2");
    assert_eq!(update.event.detail["after"]["phase"], Value::Null);

    // Tear down, children first; each is gone after.
    for id in ["ct-a", "ct-b", "bushing-a", "yard-light"] {
        let uri = format!("{base}/{id}");
        let r = api.call("DELETE", &uri, Some(&ada), None, &[]).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
        assert_error(
            &api.call("GET", &uri, Some(&vera), None, &[]).await,
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("asset north-yard/{id}"),
        );
    }
    for id in ["bay-1", "bay-2", "tower-1"] {
        let uri = format!("/api/v1/sites/north-yard/structures/{id}");
        assert_eq!(
            api.call("DELETE", &uri, Some(&ada), None, &[]).await.status,
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        api.call("DELETE", "/api/v1/sites/north-yard", Some(&ada), None, &[])
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.ok(StatusCode::OK, "GET", "/api/v1/sites", &vera, None)
            .await["items"],
        json!([])
    );
    let log = api.audit_log().await;
    assert_eq!(
        actions(&log),
        [
            "site.create",
            "structure.create",
            "structure.create",
            "structure.create",
            "asset.create",
            "asset.create",
            "asset.create",
            "asset.create",
            "asset.update",
            "asset.update",
            "structure.update",
            "site.update",
            "asset.delete",
            "asset.delete",
            "asset.delete",
            "asset.delete",
            "structure.delete",
            "structure.delete",
            "structure.delete",
            "site.delete",
        ]
    );
    assert_eq!(log[0].event.target, "north-yard");
    assert_eq!(log[1].event.target, "north-yard/bay-1");
    assert_eq!(log[0].event.detail["kind"], "substation");
}

/// Method, path, body; the status, code and a part of the message expected.
type Refusal = (
    &'static str,
    String,
    Option<Value>,
    StatusCode,
    &'static str,
    &'static str,
);

async fn refusals_say_what_is_wrong(backend: &str) {
    let (api, _db) = Api::with(backend, Users::SignIn, |state| {
        state.with_live(Arc::new(LiveEvents::new(16)))
    })
    .await;
    fixtures(&api).await;
    let ada = api.bearer("ada").await;
    let audited_before = api.audit_log().await.len();
    let site = "/api/v1/sites/north-yard";
    let cases: Vec<Refusal> = vec![
        // 400: ids, names, kinds, unknown fields and parameters.
        (
            "POST",
            "/api/v1/sites".into(),
            Some(json!({"id": "North Yard", "name": "x", "kind": "line"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "site id",
        ),
        (
            "POST",
            "/api/v1/sites".into(),
            Some(json!({"id": "x".repeat(65), "name": "x", "kind": "line"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "site id",
        ),
        (
            "POST",
            "/api/v1/sites".into(),
            Some(json!({"id": "east", "name": "  ", "kind": "line"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "site name",
        ),
        (
            "POST",
            "/api/v1/sites".into(),
            Some(json!({"id": "east", "name": "x".repeat(201), "kind": "line"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "200",
        ),
        (
            "POST",
            "/api/v1/sites".into(),
            Some(json!({"id": "east", "name": "East", "kind": "moon"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "moon",
        ),
        (
            "POST",
            "/api/v1/sites".into(),
            Some(json!({"id": "east", "name": "East", "kind": "line", "colour": "red"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "colour",
        ),
        (
            "POST",
            "/api/v1/sites".into(),
            Some(json!({"id": "east"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "name",
        ),
        (
            "PATCH",
            site.into(),
            Some(json!({"id": "renamed"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "id",
        ),
        (
            "GET",
            "/api/v1/sites/North".into(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "site id",
        ),
        (
            "POST",
            format!("{site}/structures"),
            Some(json!({"id": "bay-4", "name": "Bay 4", "kind": "pole"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "pole",
        ),
        (
            "POST",
            format!("{site}/structures"),
            Some(json!({"id": "bay_4", "name": "Bay 4", "kind": "bay"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "structure id",
        ),
        (
            "POST",
            format!("{site}/assets"),
            Some(json!({"id": "ct-1", "name": "CT", "phase": "D"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "D",
        ),
        (
            "POST",
            format!("{site}/assets"),
            Some(json!({"id": "ct-1", "name": "CT", "component_class": "two words"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "component class",
        ),
        (
            "POST",
            format!("{site}/assets"),
            Some(json!({"id": "ct-1", "name": "CT", "structure": "Bay 3"})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "structure id",
        ),
        (
            "PATCH",
            format!("{site}/assets/bay3-breaker-b"),
            Some(json!({"name": ""})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "asset name",
        ),
        (
            "GET",
            format!("{site}/assets?colour=red"),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "colour",
        ),
        (
            "GET",
            format!("{site}/assets?phase=D"),
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "D",
        ),
        // 404: what is missing is named, the parent before the child.
        (
            "GET",
            "/api/v1/sites/south-yard".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "site south-yard",
        ),
        (
            "PATCH",
            "/api/v1/sites/south-yard".into(),
            Some(json!({"name": "S"})),
            StatusCode::NOT_FOUND,
            "not_found",
            "site south-yard",
        ),
        (
            "DELETE",
            "/api/v1/sites/south-yard".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "site south-yard",
        ),
        (
            "GET",
            "/api/v1/sites/south-yard/structures".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "site south-yard",
        ),
        (
            "POST",
            "/api/v1/sites/south-yard/structures".into(),
            Some(json!({"id": "bay-1", "name": "Bay 1", "kind": "bay"})),
            StatusCode::NOT_FOUND,
            "not_found",
            "site south-yard",
        ),
        (
            "GET",
            "/api/v1/sites/south-yard/structures/bay-3".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "site south-yard",
        ),
        (
            "GET",
            format!("{site}/structures/bay-4"),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "structure north-yard/bay-4",
        ),
        (
            "DELETE",
            format!("{site}/structures/bay-4"),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "structure north-yard/bay-4",
        ),
        (
            "GET",
            "/api/v1/sites/south-yard/assets".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "site south-yard",
        ),
        (
            "POST",
            "/api/v1/sites/south-yard/assets".into(),
            Some(json!({"id": "ct-1", "name": "CT"})),
            StatusCode::NOT_FOUND,
            "not_found",
            "site south-yard",
        ),
        (
            "POST",
            format!("{site}/assets"),
            Some(json!({"id": "ct-1", "name": "CT", "structure": "bay-4"})),
            StatusCode::NOT_FOUND,
            "not_found",
            "structure north-yard/bay-4",
        ),
        (
            "PATCH",
            format!("{site}/assets/bay3-breaker-b"),
            Some(json!({"structure": "bay-4"})),
            StatusCode::NOT_FOUND,
            "not_found",
            "structure north-yard/bay-4",
        ),
        (
            "GET",
            format!("{site}/assets/ct-404"),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "asset north-yard/ct-404",
        ),
        (
            "DELETE",
            "/api/v1/sites/south-yard/assets/ct-1".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "site south-yard",
        ),
        (
            "DELETE",
            format!("{site}/assets/ct-404"),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "asset north-yard/ct-404",
        ),
        // 409: taken ids, and deletes of what is still referred to.
        (
            "POST",
            "/api/v1/sites".into(),
            Some(json!({"id": "north-yard", "name": "Again", "kind": "line"})),
            StatusCode::CONFLICT,
            "conflict",
            "site north-yard already exists",
        ),
        (
            "POST",
            format!("{site}/structures"),
            Some(json!({"id": "bay-3", "name": "Again", "kind": "bay"})),
            StatusCode::CONFLICT,
            "conflict",
            "structure north-yard/bay-3 already exists",
        ),
        (
            "POST",
            format!("{site}/assets"),
            Some(json!({"id": "bay3-breaker-b", "name": "Again"})),
            StatusCode::CONFLICT,
            "conflict",
            "asset north-yard/bay3-breaker-b already exists",
        ),
        (
            "DELETE",
            format!("{site}/structures/bay-3"),
            None,
            StatusCode::CONFLICT,
            "conflict",
            "structure north-yard/bay-3 (assets) is in use",
        ),
        (
            "DELETE",
            site.into(),
            None,
            StatusCode::CONFLICT,
            "conflict",
            "site north-yard (structures, assets, gateways) is in use",
        ),
    ];
    for (method, path, body, status, code, mentions) in cases {
        let r = api.call(method, &path, Some(&ada), body, &[]).await;
        assert!(
            r.status == status,
            "{method} {path}: {} {:?}",
            r.status,
            r.body
        );
        assert_error(&r, status, code, mentions);
    }
    // None of it changed anything: no audit records, the fixtures intact.
    assert_eq!(api.audit_log().await.len(), audited_before);
    let detail = api.ok(StatusCode::OK, "GET", site, &ada, None).await;
    assert_eq!(
        detail["name"], "north-yard",
        "named after its id by enrolment"
    );
    assert_eq!(detail["structures"][0]["assets"][0]["id"], "bay3-breaker-b");
    assert_eq!(detail["structures"][0]["assets"][0]["phase"], "B");

    // A site that only its gateway keeps: the message names just that.
    api.ok(
        StatusCode::NO_CONTENT,
        "DELETE",
        &format!("{site}/assets/bay3-breaker-b"),
        &ada,
        None,
    )
    .await;
    api.ok(
        StatusCode::NO_CONTENT,
        "DELETE",
        &format!("{site}/structures/bay-3"),
        &ada,
        None,
    )
    .await;
    assert_error(
        &api.call("DELETE", site, Some(&ada), None, &[]).await,
        StatusCode::CONFLICT,
        "conflict",
        "site north-yard (gateways) is in use",
    );
    // Unknown endpoints under the new paths are still the API's 404.
    assert_error(
        &api.call("GET", &format!("{site}/bays"), Some(&ada), None, &[])
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        "endpoint",
    );
}

async fn gateways_show_their_latest_status_and_cameras(backend: &str) {
    let (api, _db) = Api::with(backend, Users::SignIn, |state| {
        state.with_live(Arc::new(LiveEvents::new(16)))
    })
    .await;
    api.enrol("north-yard", "gw-07").await;
    api.enrol("north-yard", "gw-08").await;
    api.enrol("south-yard", "gw-01").await;
    let vera = api.bearer("vera").await;
    let now = Utc::now();
    let frame = now - Duration::seconds(2);
    assert_eq!(
        api.store
            .update_gateway_status(
                "north-yard",
                "gw-07",
                &status(
                    true,
                    vec![
                        camera("cam-1", "streaming", Some(frame)),
                        camera("cam-2", "idle", None)
                    ],
                    Some(BufferStatus {
                        depth: 12,
                        bytes: 40_960,
                        oldest_at: Some(now - Duration::seconds(30)),
                        evicted: EvictionCounts {
                            evidence: 3,
                            findings: 1
                        },
                        cap_bytes: None,
                    }),
                    now - Duration::seconds(1),
                ),
                now,
            )
            .await
            .unwrap(),
        StatusOutcome::Applied
    );
    // gw-08 went away five minutes ago: its Last Will.
    let gone = now - Duration::seconds(300);
    assert_eq!(
        api.store
            .update_gateway_status(
                "north-yard",
                "gw-08",
                &status(false, vec![], None, gone),
                gone
            )
            .await
            .unwrap(),
        StatusOutcome::Applied
    );

    let r = api
        .ok(StatusCode::OK, "GET", "/api/v1/gateways", &vera, None)
        .await;
    let items = r["items"].as_array().unwrap();
    assert_eq!(r["next_cursor"], Value::Null);
    let names: Vec<&str> = items
        .iter()
        .map(|g| g["username"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["north-yard/gw-07", "north-yard/gw-08", "south-yard/gw-01"]
    );
    let gw07 = &items[0];
    assert_eq!(gw07["online"], true);
    assert_eq!(gw07["offline_for_s"], Value::Null);
    assert_eq!(gw07["agent_version"], "0.4.2");
    assert_eq!(gw07["config_version"], 7);
    assert_eq!(gw07["model"]["name"], "yolo-thermal");
    assert_eq!(gw07["model"]["version"], "3");
    assert_eq!(
        gw07["detector"],
        "degraded (model /opt/chitti/model.onnx: not found)"
    );
    assert_eq!(gw07["buffer_depth"], 12);
    assert_eq!(gw07["buffer_bytes"], 40_960);
    assert_eq!(gw07["evicted_evidence"], 3);
    assert_eq!(gw07["evicted_findings"], 1);
    assert!(gw07["buffer_oldest_at"].is_string());
    let seen: DateTime<Utc> = serde_json::from_value(gw07["last_seen_at"].clone()).unwrap();
    assert_eq!(seen.timestamp_micros(), now.timestamp_micros());
    let status_at: DateTime<Utc> = serde_json::from_value(gw07["status_at"].clone()).unwrap();
    assert_eq!(
        status_at.timestamp_micros(),
        (now - Duration::seconds(1)).timestamp_micros()
    );
    assert_eq!(gw07["cameras"][0]["id"], "cam-1");
    assert_eq!(gw07["cameras"][0]["state"], "streaming");
    assert_eq!(gw07["revoked"], false);
    let gw08 = &items[1];
    assert_eq!(gw08["online"], false);
    let offline_for = gw08["offline_for_s"].as_u64().unwrap();
    assert!((300..400).contains(&offline_for), "{offline_for}");
    // Never heard from: offline since enrolment.
    assert!(items[2]["offline_for_s"].as_u64().is_some());
    assert_eq!(items[2]["last_seen_at"], Value::Null);

    let r = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/gateways?site=south-yard",
            &vera,
            None,
        )
        .await;
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    assert_eq!(r["items"][0]["gateway"], "gw-01");
    assert_error(
        &api.call("GET", "/api/v1/gateways?site=South", Some(&vera), None, &[])
            .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "site id",
    );
    assert_error(
        &api.call(
            "GET",
            "/api/v1/gateways?online=true",
            Some(&vera),
            None,
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "online",
    );

    // A later status no longer lists cam-2: the camera stays known, unlisted.
    let later = now + Duration::seconds(10);
    api.store
        .update_gateway_status(
            "north-yard",
            "gw-07",
            &status(
                true,
                vec![camera("cam-1", "reconnecting", None)],
                None,
                later,
            ),
            later,
        )
        .await
        .unwrap();
    let d = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/gateways/north-yard/gw-07",
            &vera,
            None,
        )
        .await;
    assert_eq!(d["username"], "north-yard/gw-07");
    assert_eq!(
        d["buffer_depth"], 12,
        "a status without a buffer keeps the last one"
    );
    assert_eq!(d["cameras"].as_array().unwrap().len(), 1);
    let known: Vec<(&str, &str, bool)> = d["known_cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["camera"].as_str().unwrap(),
                c["state"].as_str().unwrap(),
                c["listed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        known,
        [("cam-1", "reconnecting", true), ("cam-2", "idle", false)]
    );
    assert!(
        d["known_cameras"][0]["last_frame_at"].is_string(),
        "the last frame time is kept"
    );
    assert_eq!(d["last_status"]["cameras"][0]["state"], "reconnecting");
    assert_error(
        &api.call(
            "GET",
            "/api/v1/gateways/north-yard/gw-99",
            Some(&vera),
            None,
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        "gateway north-yard/gw-99",
    );
    assert_error(
        &api.call(
            "GET",
            "/api/v1/gateways/north-yard/GW",
            Some(&vera),
            None,
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "gateway id",
    );

    // Every camera, with its gateway.
    api.store
        .update_gateway_status(
            "south-yard",
            "gw-01",
            &status(
                true,
                vec![camera("cam-1", "streaming", Some(now))],
                None,
                now,
            ),
            now,
        )
        .await
        .unwrap();
    let cams = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}/{}/{}",
                    c["site"].as_str().unwrap(),
                    c["gateway"].as_str().unwrap(),
                    c["camera"].as_str().unwrap()
                )
            })
            .collect()
    };
    let all = api
        .ok(StatusCode::OK, "GET", "/api/v1/cameras", &vera, None)
        .await;
    assert_eq!(
        cams(&all),
        [
            "north-yard/gw-07/cam-1",
            "north-yard/gw-07/cam-2",
            "south-yard/gw-01/cam-1"
        ]
    );
    assert_eq!(all["items"][0]["gateway_online"], true);
    assert_eq!(all["items"][0]["fps"], 8.5);
    let north = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/cameras?site=north-yard",
            &vera,
            None,
        )
        .await;
    assert_eq!(
        cams(&north),
        ["north-yard/gw-07/cam-1", "north-yard/gw-07/cam-2"]
    );
    let by_gateway = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/cameras?gateway=gw-01",
            &vera,
            None,
        )
        .await;
    assert_eq!(cams(&by_gateway), ["south-yard/gw-01/cam-1"]);
    assert_error(
        &api.call(
            "GET",
            "/api/v1/cameras?camera=cam-1",
            Some(&vera),
            None,
            &[],
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_request",
        "camera",
    );
    // An offline gateway's cameras say so.
    api.store
        .update_gateway_status(
            "south-yard",
            "gw-01",
            &status(false, vec![], None, later),
            later,
        )
        .await
        .unwrap();
    let south = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/cameras?site=south-yard",
            &vera,
            None,
        )
        .await;
    assert_eq!(south["items"][0]["gateway_online"], false);
    assert_eq!(
        south["items"][0]["listed"], true,
        "a Last Will keeps the camera list"
    );
}

async fn revoking_a_gateway_is_audited_and_announced(backend: &str) {
    let (api, _db) = Api::with(backend, Users::SignIn, |state| {
        state.with_live(Arc::new(LiveEvents::new(16)))
    })
    .await;
    api.enrol("north-yard", "gw-07").await;
    let now = Utc::now();
    api.store
        .update_gateway_status(
            "north-yard",
            "gw-07",
            &status(
                true,
                vec![camera("cam-1", "streaming", Some(now))],
                None,
                now,
            ),
            now,
        )
        .await
        .unwrap();
    let mut changes = api.live.take_changes().unwrap();
    let ada = api.bearer("ada").await;
    let r = api
        .ok(
            StatusCode::OK,
            "POST",
            "/api/v1/gateways/north-yard/gw-07/revoke",
            &ada,
            None,
        )
        .await;
    assert_eq!(r["revoked"], true);
    assert_eq!(r["online"], false, "a revoked gateway is never online");
    assert!(r["revoked_at"].is_string());
    assert!(r["offline_for_s"].as_u64().is_some());
    assert_eq!(
        changes.try_recv().unwrap(),
        Change::Gateway {
            site: "north-yard".into(),
            gateway: "gw-07".into()
        },
        "the live stream hears of it"
    );
    let record = api
        .store
        .gateway("north-yard", "gw-07")
        .await
        .unwrap()
        .unwrap();
    assert!(record.is_revoked());
    let log = api.audit_log().await;
    let last = log.last().unwrap();
    assert_eq!(last.event.action, "gateway.revoke");
    assert_eq!(last.event.target, "north-yard/gw-07");
    assert_eq!(last.event.actor, "ada");
    assert_eq!(last.event.detail["was_online"], true);

    // Again: 409, and nothing more recorded or announced.
    assert_error(
        &api.call(
            "POST",
            "/api/v1/gateways/north-yard/gw-07/revoke",
            Some(&ada),
            None,
            &[],
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
        "already revoked",
    );
    assert_error(
        &api.call(
            "POST",
            "/api/v1/gateways/north-yard/gw-99/revoke",
            Some(&ada),
            None,
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
        "gateway north-yard/gw-99",
    );
    assert_eq!(api.audit_log().await.len(), log.len());
    assert!(changes.try_recv().is_err());
    // Still listed, as revoked.
    let list = api
        .ok(StatusCode::OK, "GET", "/api/v1/gateways", &ada, None)
        .await;
    assert_eq!(list["items"][0]["revoked"], true);
    let cams = api
        .ok(StatusCode::OK, "GET", "/api/v1/cameras", &ada, None)
        .await;
    assert_eq!(cams["items"][0]["gateway_revoked"], true);
    assert_eq!(cams["items"][0]["gateway_online"], false);
}

async fn the_openapi_document_describes_every_endpoint(backend: &str) {
    let (api, _db) = Api::with(backend, Users::SignIn, |state| {
        state.with_live(Arc::new(LiveEvents::new(16)))
    })
    .await;
    let r = api.call("GET", "/api/openapi.json", None, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let paths = &r.body["paths"];
    for (path, methods) in [
        ("/api/v1/sites", &["get", "post"][..]),
        ("/api/v1/sites/{site}", &["get", "patch", "delete"]),
        ("/api/v1/sites/{site}/structures", &["get", "post"]),
        (
            "/api/v1/sites/{site}/structures/{structure}",
            &["get", "patch", "delete"],
        ),
        ("/api/v1/sites/{site}/assets", &["get", "post"]),
        (
            "/api/v1/sites/{site}/assets/{asset}",
            &["get", "patch", "delete"],
        ),
        ("/api/v1/gateways", &["get"]),
        ("/api/v1/gateways/{site}/{gateway}", &["get"]),
        ("/api/v1/gateways/{site}/{gateway}/revoke", &["post"]),
        ("/api/v1/cameras", &["get"]),
    ] {
        for m in methods {
            let op = &paths[path][m];
            assert!(op.is_object(), "{m} {path} is not described");
            assert!(op["responses"]["401"].is_object(), "{m} {path}: 401");
            assert!(op["responses"]["403"].is_object(), "{m} {path}: 403");
            assert_eq!(
                op["security"],
                json!([{"bearer": []}, {"session": []}]),
                "{m} {path}"
            );
            let tag = if path.contains("sites") {
                "sites"
            } else {
                "fleet"
            };
            assert_eq!(op["tags"], json!([tag]), "{m} {path}");
        }
    }
    let schemas = &r.body["components"]["schemas"];
    for name in [
        "SiteView",
        "SiteDetail",
        "AssetView",
        "AssetPatch",
        "GatewayView",
        "GatewayDetail",
        "CameraView",
    ] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
    assert_eq!(
        schemas["StructureView"]["properties"]["kind"]["enum"],
        json!(["bay", "tower"])
    );
    let asset_filters: Vec<&str> = paths["/api/v1/sites/{site}/assets"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        asset_filters,
        ["site", "structure", "component_class", "phase"]
    );
}

support::on_both!(
    each_role_may_do_exactly_what_it_should,
    the_hierarchy_round_trips,
    refusals_say_what_is_wrong,
    gateways_show_their_latest_status_and_cameras,
    revoking_a_gateway_is_audited_and_announced,
    the_openapi_document_describes_every_endpoint
);
