//! The model registry and staged rollouts through the API on both stores: a model is
//! checked with ONNX Runtime (the shipped detector, its reference frames) before it is
//! saved, served with range requests; a rollout goes wave by wave as gateways report,
//! aborts by its rule and sends every gateway back, times out silent gateways, and
//! refuses downgrades and gateways already in a rollout. The driver's steps are taken
//! with explicit clocks (no waiting); the wire is the e2e test's (tests/tests/).

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chitti_common::finding::ModelIdentity;
use chitti_common::model_manifest::ModelManifest;
use chitti_common::protocol::{AgentStatus, ModelPhase, ModelState};
use chitti_hub::rollouts::RolloutDriver;
use chitti_hub::store::prelude::*;
use chitti_hub::store::AlertKind;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use support::{assert_error, Api, Reply, Users};
use tokio::sync::Notify;

const BOUNDARY: &str = "chitti-model-boundary-3e9a";

fn model_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/chitti-components-v1/model.int8.onnx")
}

/// The shipped model and its manifest (two reference frames), made once.
fn shipped() -> &'static (Vec<u8>, ModelManifest) {
    static SHIPPED: OnceLock<(Vec<u8>, ModelManifest)> = OnceLock::new();
    SHIPPED.get_or_init(|| {
        let manifest = chitti_detector::selftest::write_manifest(
            &model_path(),
            None,
            Some("chitti-components".into()),
            Some("1.1.0".into()),
            7,
            2,
        )
        .expect("ORT_DYLIB_PATH names the ONNX Runtime library (tests/run-all.sh sets it)");
        (std::fs::read(model_path()).unwrap(), manifest)
    })
}

fn manifest_with(version: &str) -> ModelManifest {
    let mut m = shipped().1.clone();
    m.version = version.into();
    m
}

fn form(manifest: &[u8], model: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"manifest\"\r\nContent-Type: application/json\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(manifest);
    body.extend_from_slice(
        format!("\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"; filename=\"model.onnx\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(model);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(api: &Api, token: &str, manifest: &ModelManifest, model: &[u8]) -> Reply {
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/models")
        .header("authorization", format!("Bearer {token}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(form(
            &serde_json::to_vec(manifest).unwrap(),
            model,
        )))
        .unwrap();
    api.send(req).await
}

async fn uploaded(api: &Api, version: &str) -> String {
    let r = upload(api, &api.admin, &manifest_with(version), &shipped().0).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

fn status(online: bool, model: Option<(&str, &str)>, ts: DateTime<Utc>) -> AgentStatus {
    AgentStatus {
        online,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        cameras: Vec::new(),
        buffer: None,
        model: model.map(|(name, version)| ModelIdentity {
            name: name.into(),
            version: version.into(),
            sha256: "ab".repeat(32),
        }),
        detector: None,
        config_version: None,
        model_update: None,
        evidence: None,
        ts,
        session: Some(ts),
    }
}

/// Enrols `north/gw-a`, `gw-b`, `gw-c`, each online.
async fn fleet(api: &Api) {
    let now = Utc::now();
    for gw in ["gw-a", "gw-b", "gw-c"] {
        api.enrol("north", gw).await;
        api.store
            .update_gateway_status("north", gw, &status(true, None, now), now)
            .await
            .unwrap();
    }
}

/// A gateway's report on `/model/state`, as ingest records it.
async fn report(api: &Api, gw: &str, seq: i64, phase: ModelPhase, reason: Option<&str>) {
    let state = ModelState {
        seq: seq as u64,
        model_id: None,
        phase,
        reason: reason.map(Into::into),
        running: None,
        ts: Utc::now(),
    };
    assert!(api
        .store
        .apply_model_state("north", gw, &state, Utc::now())
        .await
        .unwrap());
}

fn driver(api: &Api) -> (RolloutDriver<chitti_hub::store::AnyStore>, Arc<Notify>) {
    let publish = Arc::new(Notify::new());
    let d = RolloutDriver::new(
        api.store.clone(),
        Arc::new(Notify::new()),
        Arc::clone(&publish),
        None,
    );
    (d, publish)
}

async fn rollout(api: &Api, id: &str) -> Value {
    api.ok(
        StatusCode::OK,
        "GET",
        &format!("/api/v1/rollouts/{id}"),
        &api.viewer,
        None,
    )
    .await
}

fn states(view: &Value) -> Vec<(String, String)> {
    view["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["gateway"].as_str().unwrap().to_string(),
                g["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn seq_of(view: &Value, gateway: &str) -> i64 {
    view["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gateway"] == gateway)
        .unwrap()["seq"]
        .as_i64()
        .unwrap()
}

async fn models_are_checked_before_they_enter_the_registry(backend: &str) {
    let (api, _db) = Api::with(backend, Users::Sessions, |s| s).await;
    let (bytes, manifest) = shipped();
    assert_error(
        &upload(&api, &api.viewer, manifest, bytes).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // One byte flipped: refused by its sha256, before the runtime sees it.
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let r = upload(&api, &api.admin, manifest, &flipped).await;
    let message = assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_document");
    assert!(message.contains("sha256"), "{message}");
    // Expectations the model does not meet: every box moved away.
    let mut wrong = manifest.clone();
    for frame in &mut wrong.reference_frames {
        for e in &mut frame.expect {
            e.bbox.x = (e.bbox.x + 200) % 400;
            e.bbox.y = (e.bbox.y + 150) % 300;
        }
    }
    let message = assert_error(
        &upload(&api, &api.admin, &wrong, bytes).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_document",
    );
    assert!(message.contains("self-test failed"), "{message}");
    // A manifest with several problems: each named.
    let mut bad = manifest.clone();
    bad.version = "latest".into();
    bad.reference_frames.clear();
    let r = upload(&api, &api.admin, &bad, bytes).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_document");
    assert_eq!(
        r.body["error"]["problems"].as_array().unwrap().len(),
        2,
        "{:?}",
        r.body
    );
    assert!(
        api.store.models().await.unwrap().is_empty(),
        "nothing unchecked is saved"
    );

    let r = upload(&api, &api.admin, manifest, bytes).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["sha256"], manifest.sha256);
    assert_eq!(r.body["check"].as_array().unwrap().len(), 2);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_error(
        &upload(&api, &api.admin, manifest, bytes).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let audit = api.audit_log().await;
    assert!(audit.iter().any(|a| a.event.action == "model.upload"));

    // The file: whole, in ranges (a resumed download), by token without a session.
    let file = format!("/api/v1/models/{id}/file");
    let whole = api.get(&file, Some(&api.viewer), None).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(&whole.bytes, bytes);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let tail = api
        .call(
            "GET",
            &file,
            Some(&api.viewer),
            None,
            &[("range", "bytes=1000-")],
        )
        .await;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&tail.bytes[..], &bytes[1000..]);
    assert_eq!(
        tail.header("content-range"),
        Some(format!("bytes 1000-{}/{}", bytes.len() - 1, bytes.len()).as_str())
    );
    let beyond = api
        .call(
            "GET",
            &file,
            Some(&api.viewer),
            None,
            &[("range", &format!("bytes={}-", bytes.len()))],
        )
        .await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let token = api.store.model(&id).await.unwrap().unwrap().download_token;
    let by_token = api.get(&format!("{file}?token={token}"), None, None).await;
    assert_eq!(by_token.status, StatusCode::OK);
    assert_eq!(by_token.bytes.len(), bytes.len());
    assert_error(
        &api.get(&format!("{file}?token={}", "0".repeat(48)), None, None)
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &api.get(&file, None, None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

async fn a_rollout_goes_canary_first_then_the_rest(backend: &str) {
    let (api, _db) = Api::with(backend, Users::Sessions, |s| s).await;
    fleet(&api).await;
    let model = uploaded(&api, "1.1.0").await;
    let body = json!({
        "model_id": model,
        "target": {"gateways": ["north/gw-b", "north/gw-a", "north/gw-c"]},
        "waves": [{"size": 1}],
        "probation_s": 60,
        "abort_failure_ratio": 0.5,
    });
    assert_error(
        &api.call(
            "POST",
            "/api/v1/rollouts",
            Some(&api.operator),
            Some(body.clone()),
            &[],
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let created = api
        .ok(
            StatusCode::CREATED,
            "POST",
            "/api/v1/rollouts",
            &api.admin,
            Some(body),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "running");
    assert_eq!(created["waves"], json!([1, 2]));

    let (driver, publish) = driver(&api);
    let now = Utc::now();
    driver.pass(now).await;
    // The canary (the first listed) alone is sent the model.
    let view = rollout(&api, &id).await;
    assert_eq!(
        states(&view),
        [
            ("north/gw-b".into(), "downloading".into()),
            ("north/gw-a".into(), "waiting".into()),
            ("north/gw-c".into(), "waiting".into()),
        ]
    );
    assert!(
        tokio::time::timeout(std::time::Duration::ZERO, publish.notified())
            .await
            .is_ok(),
        "the publisher is woken for the new desired model"
    );
    let desired = api
        .store
        .desired_model("north", "gw-b")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (desired.seq, desired.model_id.as_deref()),
        (1, Some(model.as_str()))
    );
    assert!(api
        .store
        .desired_model("north", "gw-a")
        .await
        .unwrap()
        .is_none());

    // Reports move it; a report for another seq is not this rollout's.
    report(&api, "gw-b", 7, ModelPhase::Failed, Some("not ours")).await;
    driver.pass(now).await;
    assert_eq!(states(&rollout(&api, &id).await)[0].1, "downloading");
    report(&api, "gw-b", 1, ModelPhase::Testing, None).await;
    driver.pass(now).await;
    assert_eq!(states(&rollout(&api, &id).await)[0].1, "testing");
    report(&api, "gw-b", 1, ModelPhase::Active, None).await;
    driver.pass(now).await;
    let view = rollout(&api, &id).await;
    assert_eq!(view["current_wave"], 1);
    assert_eq!(
        states(&view),
        [
            ("north/gw-b".into(), "succeeded".into()),
            ("north/gw-a".into(), "downloading".into()),
            ("north/gw-c".into(), "downloading".into()),
        ]
    );
    for gw in ["gw-a", "gw-c"] {
        report(&api, gw, 1, ModelPhase::Active, None).await;
    }
    driver.pass(now).await;
    let view = rollout(&api, &id).await;
    assert_eq!(view["state"], "completed", "{view:?}");
    assert_eq!(view["reason"], "3 succeeded, 0 failed, 0 skipped");
    // Finished: nothing more to abort.
    assert_error(
        &api.call(
            "POST",
            &format!("/api/v1/rollouts/{id}/abort"),
            Some(&api.admin),
            None,
            &[],
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
}

async fn a_failing_canary_aborts_the_rollout_and_raises_an_alarm(backend: &str) {
    let (api, _db) = Api::with(backend, Users::Sessions, |s| s).await;
    fleet(&api).await;
    let first = uploaded(&api, "1.1.0").await;
    let second = uploaded(&api, "1.2.0").await;
    // Everyone on 1.1.0 first.
    let body = json!({"model_id": first, "target": {"site": "north"}});
    let done = api
        .ok(
            StatusCode::CREATED,
            "POST",
            "/api/v1/rollouts",
            &api.admin,
            Some(body),
        )
        .await;
    let (driver, _) = driver(&api);
    let now = Utc::now();
    driver.pass(now).await;
    for gw in ["gw-a", "gw-b", "gw-c"] {
        report(&api, gw, 1, ModelPhase::Active, None).await;
    }
    driver.pass(now).await;
    assert_eq!(
        rollout(&api, done["id"].as_str().unwrap()).await["state"],
        "completed"
    );

    // 1.2.0: its canary's self-test fails on the gateway: any failure aborts.
    let body = json!({"model_id": second, "target": {"site": "north"}, "waves": [{"size": 1}]});
    let created = api
        .ok(
            StatusCode::CREATED,
            "POST",
            "/api/v1/rollouts",
            &api.admin,
            Some(body),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    driver.pass(now).await;
    let view = rollout(&api, &id).await;
    let canary = view["gateways"][0]["gateway"].as_str().unwrap().to_string();
    let canary_gw = canary.split_once('/').unwrap().1.to_string();
    assert_eq!(seq_of(&view, &canary), 2);
    report(
        &api,
        &canary_gw,
        2,
        ModelPhase::Failed,
        Some("self-test failed: 1 of 7 expected detections found"),
    )
    .await;
    driver.pass(now).await;
    let view = rollout(&api, &id).await;
    assert_eq!(view["state"], "aborted", "{view:?}");
    assert!(
        view["reason"]
            .as_str()
            .unwrap()
            .contains("self-test failed"),
        "{view:?}"
    );
    let all = states(&view);
    assert_eq!(all[0], (canary.clone(), "failed".into()));
    assert!(all[1..].iter().all(|(_, s)| s == "skipped"), "{all:?}");
    // The canary is sent back to 1.1.0 (a newer seq); the others were never sent 1.2.0.
    let desired = api
        .store
        .desired_model("north", &canary_gw)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (desired.seq, desired.model_id.as_deref()),
        (3, Some(first.as_str()))
    );
    for (gw, _) in &all[1..] {
        let gw = gw.split_once('/').unwrap().1;
        let d = api.store.desired_model("north", gw).await.unwrap().unwrap();
        assert_eq!((d.seq, d.model_id.as_deref()), (1, Some(first.as_str())));
    }

    // A fleet alarm names the gateway, the model and why.
    let rules = chitti_hub::config::HubConfig::default().watch_rules();
    chitti_hub::alarms::FleetWatch::new(api.store.clone(), rules, None)
        .pass(Utc::now())
        .await
        .unwrap();
    let alarms = api.store.unresolved_fleet_alarms().await.unwrap();
    let alarm = alarms
        .iter()
        .find(|a| a.kind == AlertKind::ModelFailed)
        .expect("a model_failed alarm");
    assert_eq!(alarm.gateway, canary_gw);
    let detail = alarm.detail.as_deref().unwrap();
    assert!(
        detail.contains(&second) && detail.contains("self-test failed"),
        "{detail}"
    );
}

async fn silence_fails_online_gateways_and_skips_offline_ones(backend: &str) {
    let (api, _db) = Api::with(backend, Users::Sessions, |s| s).await;
    fleet(&api).await;
    let now = Utc::now();
    // gw-c went offline (its Last Will).
    api.store
        .update_gateway_status(
            "north",
            "gw-c",
            &status(false, None, now + Duration::seconds(1)),
            now,
        )
        .await
        .unwrap();
    let model = uploaded(&api, "1.1.0").await;
    let body = json!({
        "model_id": model, "target": {"gateways": ["north/gw-c", "north/gw-a"]},
        "probation_s": 30, "step_timeout_s": 120, "abort_failure_ratio": 1.0,
    });
    let created = api
        .ok(
            StatusCode::CREATED,
            "POST",
            "/api/v1/rollouts",
            &api.admin,
            Some(body),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let (driver, _) = driver(&api);
    driver.pass(now).await;
    // Paused, nothing times out.
    api.ok(
        StatusCode::OK,
        "POST",
        &format!("/api/v1/rollouts/{id}/pause"),
        &api.admin,
        Some(json!({"reason": "night shift"})),
    )
    .await;
    assert_error(
        &api.call(
            "POST",
            &format!("/api/v1/rollouts/{id}/pause"),
            Some(&api.admin),
            None,
            &[],
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let later = now + Duration::seconds(121);
    driver.pass(later).await;
    assert!(states(&rollout(&api, &id).await)
        .iter()
        .all(|(_, s)| s == "downloading"));
    api.ok(
        StatusCode::OK,
        "POST",
        &format!("/api/v1/rollouts/{id}/resume"),
        &api.admin,
        None,
    )
    .await;
    driver.pass(later).await;
    let view = rollout(&api, &id).await;
    assert_eq!(
        states(&view),
        [
            ("north/gw-c".into(), "skipped".into()),
            ("north/gw-a".into(), "failed".into()),
        ]
    );
    assert!(view["gateways"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("no decision within 120 s"));
    assert_eq!(
        view["state"], "completed",
        "ratio 1.0 never aborts: {view:?}"
    );
    let actions: Vec<String> = api
        .audit_log()
        .await
        .into_iter()
        .map(|a| a.event.action)
        .collect();
    for a in ["rollout.create", "rollout.pause", "rollout.resume"] {
        assert!(actions.iter().any(|x| x == a), "{a}: {actions:?}");
    }
}

async fn downgrades_and_busy_gateways_are_refused(backend: &str) {
    let (api, _db) = Api::with(backend, Users::Sessions, |s| s).await;
    fleet(&api).await;
    let now = Utc::now() + Duration::seconds(1);
    api.store
        .update_gateway_status(
            "north",
            "gw-a",
            &status(true, Some(("chitti-components", "2.0.0")), now),
            now,
        )
        .await
        .unwrap();
    let model = uploaded(&api, "1.1.0").await;
    let body = |extra: Value| {
        let mut b = json!({"model_id": model, "target": {"gateways": ["north/gw-a", "north/gw-b", "north/nope"]}, "waves": [{"size": 0}]});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let r = api
        .call(
            "POST",
            "/api/v1/rollouts",
            Some(&api.admin),
            Some(body(json!({}))),
            &[],
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_document");
    let problems: Vec<String> =
        serde_json::from_value(r.body["error"]["problems"].clone()).unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("north/nope")));
    assert!(problems.iter().any(|p| p.starts_with("waves[0]")));
    assert!(problems
        .iter()
        .any(|p| p.contains("north/gw-a runs chitti-components 2.0.0")
            && p.contains("allow_downgrade")));
    assert_error(
        &api.call(
            "POST",
            "/api/v1/rollouts",
            Some(&api.admin),
            Some(json!({"model_id": "nope", "target": {"site": "north"}})),
            &[],
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let allowed = json!({"model_id": model, "target": {"gateways": ["north/gw-a", "north/gw-b"]}, "allow_downgrade": true});
    let created = api
        .ok(
            StatusCode::CREATED,
            "POST",
            "/api/v1/rollouts",
            &api.admin,
            Some(allowed),
        )
        .await;
    // gw-b is in that unfinished rollout.
    let again = json!({"model_id": model, "target": {"gateways": ["north/gw-c", "north/gw-b"]}});
    let message = assert_error(
        &api.call(
            "POST",
            "/api/v1/rollouts",
            Some(&api.admin),
            Some(again.clone()),
            &[],
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert!(message.contains("north/gw-b"), "{message}");
    // The emergency stop frees it.
    let id = created["id"].as_str().unwrap();
    let aborted = api
        .ok(
            StatusCode::OK,
            "POST",
            &format!("/api/v1/rollouts/{id}/abort"),
            &api.admin,
            Some(json!({"reason": "wrong model"})),
        )
        .await;
    assert_eq!(aborted["state"], "aborted");
    assert_eq!(aborted["reason"], "aborted by ada: wrong model");
    api.ok(
        StatusCode::CREATED,
        "POST",
        "/api/v1/rollouts",
        &api.admin,
        Some(again),
    )
    .await;
}

support::on_both!(
    models_are_checked_before_they_enter_the_registry,
    a_rollout_goes_canary_first_then_the_rest,
    a_failing_canary_aborts_the_rollout_and_raises_an_alarm,
    silence_fails_online_gateways_and_skips_offline_ones,
    downgrades_and_busy_gateways_are_refused,
);
