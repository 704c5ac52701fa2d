//! A gateway's configuration through the API on both stores: desired documents
//! validated with the agent's own code (every problem in a 422, nothing saved),
//! versions that only grow with `ETag`/`If-Match` (428 without, 409 stale), history
//! and audit, and the gateway's `/config/state` kept only when newer.

mod support;

use axum::http::StatusCode;
use chitti_common::protocol::{ConfigState, ConfigStatus};
use chitti_hub::store::prelude::*;
use chrono::{Duration, Utc};
use serde_json::json;
use support::{assert_error, Api};

const DOC: &str = r#"version = 1
[identity]
site = "north"
gateway = "gw-a"
[[camera]]
id = "cam-1"
[camera.source]
kind = "simulated"
fps = 5.0
[analysis]
max_hotspots = 8
"#;

async fn desired_configs_are_validated_versioned_and_audited(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.enrol("north", "gw-a").await;
    let (ada, _, _) = api.login("ada").await;
    let (otto, _, _) = api.login("otto").await;
    let uri = "/api/v1/gateways/north/gw-a/config";

    let r = api.get(uri, Some(&otto), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.header("etag"), Some("\"0\""));
    assert_eq!(r.body["desired"]["version"], 0);
    assert!(r.body["desired"]["config"].is_null() && r.body["reported"].is_null());

    let put = |body: serde_json::Value, token: String, etag: Option<&'static str>| {
        let api = &api;
        async move {
            let headers: Vec<(&str, &str)> = etag.map(|e| ("if-match", e)).into_iter().collect();
            api.call("PUT", uri, Some(&token), Some(body), &headers)
                .await
        }
    };
    let body = json!({"config": DOC, "reason": "fewer hotspots per frame"});
    assert_error(
        &put(body.clone(), ada.clone(), None).await,
        StatusCode::PRECONDITION_REQUIRED,
        "precondition_required",
    );
    assert_error(
        &put(body.clone(), otto.clone(), Some("\"0\"")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    // Another gateway's document with a key the agent does not know: both named (the
    // values of an undecodable section cannot be checked), nothing saved.
    let invalid = DOC
        .replace("gateway = \"gw-a\"", "gateway = \"gw-b\"")
        .replace("fps = 5.0", "fps = 0.0")
        .replace("max_hotspots = 8", "max_hotspots = 8\nthreshold = 40");
    let r = put(json!({"config": invalid}), ada.clone(), Some("\"0\"")).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_document");
    let problems: Vec<String> =
        serde_json::from_value(r.body["error"]["problems"].clone()).unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0]
            .starts_with("identity.gateway: \"gw-b\", but this is the configuration of north/gw-a")
            && problems[1].starts_with("analysis.threshold: unknown field"),
        "{problems:?}"
    );
    // Decodable but invalid in two ways: both named.
    let fixed_decode = invalid.replace("\nthreshold = 40", "");
    let r = put(json!({"config": fixed_decode}), ada.clone(), Some("\"0\"")).await;
    let problems: Vec<String> =
        serde_json::from_value(r.body["error"]["problems"].clone()).unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("identity.gateway: \"gw-b\""))
            && problems
                .iter()
                .any(|p| p.starts_with("camera[0].source.fps")),
        "{problems:?}"
    );
    let r = put(
        json!({"config": "version = [\n"}),
        ada.clone(),
        Some("\"0\""),
    )
    .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_document");
    // Larger than any agent file: refused before it is parsed.
    let huge = format!("{DOC}# {}\n", "x".repeat(300 << 10));
    let r = put(json!({"config": huge}), ada.clone(), Some("\"0\"")).await;
    assert!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_document")
            .contains("at most 262144"),
        "{:?}",
        r.body
    );
    assert_eq!(
        api.get(uri, Some(&ada), None).await.body["desired"]["version"],
        0
    );

    let r = put(body.clone(), ada.clone(), Some("\"0\"")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        (r.body["version"].as_i64(), r.header("etag")),
        (Some(1), Some("\"1\""))
    );
    // A stale edit names the current version.
    let stale = put(body.clone(), ada.clone(), Some("\"0\"")).await;
    assert!(
        assert_error(&stale, StatusCode::CONFLICT, "conflict").contains("the current version is 1")
    );
    let second = DOC.replace("max_hotspots = 8", "max_hotspots = 4");
    let r = put(json!({"config": second}), ada.clone(), Some("W/\"1\"")).await;
    assert_eq!(r.body["version"], 2, "{:?}", r.body);

    let r = api.get(uri, Some(&ada), None).await;
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert_eq!(r.body["desired"]["config"], second);
    assert_eq!(r.body["desired"]["author"], "ada");
    let history: Vec<(i64, String)> = r.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["version"].as_i64().unwrap(),
                h["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![(2, String::new()), (1, "fewer hotspots per frame".into())]
    );
    assert_eq!(r.body["in_sync"], false);
    let audited: Vec<_> = api
        .audit_log()
        .await
        .into_iter()
        .filter(|a| a.event.action == "gateway.config")
        .collect();
    assert_eq!(audited.len(), 2);
    assert_eq!(audited[0].event.target, "north/gw-a");

    // Unknown and revoked gateways.
    let r = api
        .get("/api/v1/gateways/north/gw-x/config", Some(&ada), None)
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    api.enrol("north", "gw-old").await;
    api.ok(
        StatusCode::OK,
        "POST",
        "/api/v1/gateways/north/gw-old/revoke",
        &ada,
        None,
    )
    .await;
    let r = api
        .call(
            "PUT",
            "/api/v1/gateways/north/gw-old/config",
            Some(&ada),
            Some(json!({"config": DOC.replace("gw-a", "gw-old")})),
            &[("if-match", "\"0\"")],
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

async fn the_gateways_report_is_kept_only_when_newer(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.enrol("north", "gw-a").await;
    let (ada, _, _) = api.login("ada").await;
    let uri = "/api/v1/gateways/north/gw-a/config";
    api.call(
        "PUT",
        uri,
        Some(&ada),
        Some(json!({"config": DOC})),
        &[("if-match", "\"0\"")],
    )
    .await;
    // Stored to the microsecond.
    let t0 = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let rejected = ConfigState {
        version: 1,
        status: ConfigStatus::Rejected,
        errors: vec!["camera[0].source.path: /srv/drops is not a folder".into()],
        applied_version: None,
        applied_at: None,
        config: Some("version = 1\n".into()),
        ts: t0,
    };
    assert!(api
        .store
        .apply_config_state("north", "gw-a", &rejected, t0)
        .await
        .unwrap());
    let applied = ConfigState {
        status: ConfigStatus::Applied,
        errors: Vec::new(),
        applied_version: Some(1),
        applied_at: Some(t0 + Duration::seconds(1)),
        ts: t0 + Duration::seconds(1),
        ..rejected.clone()
    };
    assert!(api
        .store
        .apply_config_state("north", "gw-a", &applied, t0)
        .await
        .unwrap());
    // The older report again (a replay, or retained and seen again): nothing changes.
    assert!(!api
        .store
        .apply_config_state("north", "gw-a", &rejected, t0)
        .await
        .unwrap());
    assert!(!api
        .store
        .apply_config_state("north", "gw-a", &applied, t0)
        .await
        .unwrap());
    let r = api.get(uri, Some(&ada), None).await;
    let reported = &r.body["reported"];
    assert_eq!(reported["status"], "applied", "{reported}");
    assert_eq!(reported["applied_version"], 1);
    assert_eq!(reported["errors"], json!([]));
    assert_eq!(r.body["in_sync"], true);
    let stored = api
        .store
        .reported_config("north", "gw-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, applied);
}

async fn one_change_reaches_a_site_with_overrides_all_or_nothing(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    for gw in ["gw-a", "gw-b", "gw-c"] {
        api.enrol("north", gw).await;
    }
    api.enrol("south", "gw-z").await;
    let (ada, _, _) = api.login("ada").await;
    let doc = |gw: &str| DOC.replace("gw-a", gw);
    // gw-a has a desired document; gw-b only reported what it runs; gw-c nothing yet.
    api.call(
        "PUT",
        "/api/v1/gateways/north/gw-a/config",
        Some(&ada),
        Some(json!({"config": doc("gw-a")})),
        &[("if-match", "\"0\"")],
    )
    .await;
    let running = |gw: &str| ConfigState {
        version: 0,
        status: ConfigStatus::Applied,
        errors: Vec::new(),
        applied_version: None,
        applied_at: None,
        config: Some(doc(gw)),
        ts: Utc::now(),
    };
    api.store
        .apply_config_state("north", "gw-b", &running("gw-b"), Utc::now())
        .await
        .unwrap();
    let uri = "/api/v1/gateways/config-changes";
    let change = json!({
        "target": {"site": "north"},
        "set": {"analysis.tracking.raise_after_frames": 3},
        "overrides": {"north/gw-b": {"analysis.tracking.raise_after_frames": 5}},
        "reason": "fewer false raises",
    });
    let r = api
        .call("POST", uri, Some(&ada), Some(change.clone()), &[])
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_document");
    assert!(r.body["error"]["problems"][0]
        .as_str()
        .unwrap()
        .starts_with("north/gw-c: no configuration to change yet"));
    api.store
        .apply_config_state("north", "gw-c", &running("gw-c"), Utc::now())
        .await
        .unwrap();
    // One gateway's result invalid: named, nothing saved anywhere.
    let mut bad = change.clone();
    bad["overrides"]["north/gw-a"] = json!({"analysis.max_hotspots": 0});
    let r = api.call("POST", uri, Some(&ada), Some(bad), &[]).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_document");
    assert_eq!(
        r.body["error"]["problems"],
        json!(["north/gw-a: analysis.max_hotspots: must be at least 1"])
    );
    let version = |gw: &'static str| {
        let api = &api;
        async move {
            api.store
                .desired_configs("north", gw, 1)
                .await
                .unwrap()
                .first()
                .map(|d| (d.version, d.document.clone()))
        }
    };
    assert_eq!(version("gw-a").await.unwrap().0, 1);
    assert!(version("gw-b").await.is_none());

    let r = api
        .ok(StatusCode::OK, "POST", uri, &ada, Some(change))
        .await;
    assert_eq!(
        r["changes"],
        json!([
            {"gateway": "north/gw-a", "version": 2},
            {"gateway": "north/gw-b", "version": 1},
            {"gateway": "north/gw-c", "version": 1},
        ])
    );
    for (gw, frames) in [("gw-a", 3), ("gw-b", 5), ("gw-c", 3)] {
        let (_, text) = version(gw).await.unwrap();
        let config = chitti_hub::remote_config::validate_document("north", gw, &text).unwrap();
        assert_eq!(config.analysis.tracking.raise_after_frames, frames, "{gw}");
        assert_eq!(
            config.analysis.max_hotspots, 8,
            "{gw}: the rest of its document kept"
        );
    }
    assert!(api
        .store
        .desired_configs("south", "gw-z", 1)
        .await
        .unwrap()
        .is_empty());

    // An override for a gateway outside the target; an unknown gateway.
    let r = api
        .call("POST", uri, Some(&ada), Some(json!({"target": {"gateways": ["north/gw-a"]}, "set": {}, "overrides": {"south/gw-z": {"health.status_interval_s": 5}}})), &[])
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    let r = api
        .call("POST", uri, Some(&ada), Some(json!({"target": {"gateways": ["north/gw-q"]}, "set": {"health.status_interval_s": 5}})), &[])
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let (otto, _, _) = api.login("otto").await;
    let r = api
        .call(
            "POST",
            uri,
            Some(&otto),
            Some(json!({"target": {"site": "north"}, "set": {"health.status_interval_s": 5}})),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
}

support::on_both!(
    one_change_reaches_a_site_with_overrides_all_or_nothing,
    desired_configs_are_validated_versioned_and_audited,
    the_gateways_report_is_kept_only_when_newer,
);
