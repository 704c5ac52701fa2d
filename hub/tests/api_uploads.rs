//! `POST /api/v1/uploads` at router level (`Router::oneshot`, behind the hub's global
//! body limit), on SQLite and Postgres: the real FLIR fixtures give the thermal core's
//! findings, damaged and foreign files fail alone, evidence and alerts are stored,
//! re-uploads duplicate nothing, roles and limits hold, and the NDJSON answer streams
//! one line per file.

mod support;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use chitti_common::analysis::AnalysisOptions;
use chitti_common::finding::{EvidenceRef, FindingSource};
use chitti_common::flir::ParseLimits;
use chitti_common::inspection::{inspect_file, sha256_hex, FindingOrigin, InspectionOptions};
use chitti_common::severity::SeverityCatalog;
use chitti_hub::api::{router, ApiState};
use chitti_hub::evidence::EvidenceStore;
use chitti_hub::live::{Change, LiveEvents};
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AlertQuery, FindingQuery, NewAsset, NewSite, SiteKind};
use chitti_test_support::{fixtures_dir, read_fixture};
use serde_json::Value;
use std::sync::Arc;
use support::{assert_error, Api, Reply, TestDb, Users};

const SITE: &str = "north-yard";
const ASSET: &str = "bay3-breaker-b";
const BOUNDARY: &str = "chitti-test-boundary-7d1f";

/// Every FLIR fixture (the reference.json samples), by name.
fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = reference()["samples"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A `multipart/form-data` body, built by hand.
#[derive(Default)]
struct Form(Vec<u8>);

impl Form {
    fn text(mut self, name: &str, value: &str) -> Self {
        self.0.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
        self
    }

    fn file(mut self, file_name: &str, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        self.0.extend_from_slice(bytes);
        self.0.extend_from_slice(b"\r\n");
        self
    }

    fn site(self) -> Self {
        self.text("site", SITE)
    }

    fn finish(mut self) -> Vec<u8> {
        self.0
            .extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        self.0
    }
}

/// How to send a request.
#[derive(Clone, Copy, Default)]
struct Send<'a> {
    token: Option<&'a str>,
    ndjson: bool,
    /// Declare the body's length (clients do; chunked bodies do not).
    content_length: bool,
}

/// As `chitti_hub::http::router` mounts the API: under the global body limit.
fn mount(state: ApiState) -> axum::Router {
    router(state).layer(DefaultBodyLimit::max(chitti_hub::http::MAX_BODY_BYTES))
}

impl Api {
    async fn uploads(backend: &str) -> (Self, TestDb) {
        Self::uploads_with_limits(backend, 256 << 20, 64 << 20).await
    }

    /// An API whose uploads may be `max_upload` bytes and each file `max_file` bytes,
    /// behind the hub's global 1 MiB body limit; `SITE` and its `ASSET` seeded.
    async fn uploads_with_limits(backend: &str, max_upload: u64, max_file: u64) -> (Self, TestDb) {
        let (mut api, db) = Api::with(backend, Users::Sessions, |state| {
            state
                .with_evidence(Arc::new(EvidenceStore::in_memory(max_file)))
                .with_live(Arc::new(LiveEvents::new(64)))
                .with_max_upload_bytes(max_upload)
        })
        .await;
        api.app = mount(api.state.clone());
        api.store
            .add_site(&NewSite {
                id: SITE.into(),
                name: "North Yard 132 kV".into(),
                kind: SiteKind::Substation,
            })
            .await
            .unwrap();
        api.store
            .add_asset(&NewAsset {
                site: SITE.into(),
                structure: None,
                id: ASSET.into(),
                name: "Bay 3 breaker, phase B".into(),
                phase: None,
                component_class: None,
            })
            .await
            .unwrap();
        (api, db)
    }

    async fn upload(&self, body: Vec<u8>, send: Send<'_>) -> Reply {
        let mut req = Request::builder()
            .method("POST")
            .uri("/api/v1/uploads")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            );
        if let Some(t) = send.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if send.ndjson {
            req = req.header("accept", "application/x-ndjson");
        }
        if send.content_length {
            req = req.header("content-length", body.len().to_string());
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    fn as_operator(&self) -> Send<'_> {
        Send {
            token: Some(&self.operator),
            content_length: true,
            ..Send::default()
        }
    }

    async fn findings(&self) -> Vec<chitti_common::finding::Finding> {
        self.stored().await.into_iter().map(|f| f.finding).collect()
    }

    async fn stored(&self) -> Vec<chitti_hub::store::StoredFinding> {
        let page = self
            .store
            .list_findings(&FindingQuery {
                site: Some(SITE.into()),
                limit: 1000,
                ..FindingQuery::default()
            })
            .await
            .unwrap();
        assert!(page.next_cursor.is_none());
        page.items
    }
}

/// What the thermal core itself makes of a file, as the hub reports it.
fn expected_findings(bytes: &[u8], camera: &str) -> (usize, Vec<chitti_common::finding::Finding>) {
    let options = InspectionOptions {
        table: SeverityCatalog::builtin()
            .get("utility-absolute")
            .unwrap()
            .clone(),
        analysis: AnalysisOptions::default(),
        limits: ParseLimits::default(),
    };
    let inspection = inspect_file(bytes, &options).unwrap();
    let frame = inspection.hottest_frame().unwrap();
    let now = chrono::Utc::now();
    let origin = FindingOrigin {
        site: SITE.into(),
        gateway: "upload".into(),
        camera: camera.into(),
        asset: None,
        preset: None,
        source: FindingSource::Upload,
        captured_at: now.fixed_offset(),
        observed_at: now,
        model: None,
    };
    let sha = sha256_hex(bytes);
    let findings = frame.still_findings(
        &origin,
        &format!("upload/{SITE}/upload/{camera}"),
        &sha,
        Some(EvidenceRef {
            sha256: sha.clone(),
        }),
    );
    (frame.index, findings)
}

async fn fixtures_give_the_thermal_cores_findings(backend: &str) {
    let (api, _db) = Api::uploads(backend).await;
    let mut changes = api.live.take_changes().unwrap();
    let names = fixture_names();
    let mut form = Form::default().site();
    for name in &names {
        form = form.file(name, &read_fixture(name));
    }
    let r = api.upload(form.finish(), api.as_operator()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.content_type().starts_with("application/json"));
    let files = r.body["files"].as_array().unwrap();
    assert_eq!(files.len(), names.len());
    let reference = reference();
    let mut total = 0;
    for (file, name) in files.iter().zip(&names) {
        let bytes = read_fixture(name);
        assert_eq!(file["name"], name.as_str());
        assert_eq!(file["status"], "ok", "{name}: {file}");
        assert_eq!(file["error"], Value::Null);
        assert_eq!(file["size"], bytes.len());
        let sha = sha256_hex(&bytes);
        assert_eq!(file["sha256"], sha.as_str(), "{name}");
        let camera = file["camera"].as_str().unwrap();
        chitti_common::protocol::validate_id("camera", camera).unwrap();
        // The same numbers as the thermal core's own analysis of the file.
        let (frame, expected) = expected_findings(&bytes, camera);
        assert_eq!(file["frame"], frame, "{name}");
        let got = file["findings"].as_array().unwrap();
        assert_eq!(got.len(), expected.len(), "{name}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g["id"], e.id.to_string(), "{name}");
            assert_eq!(g["track_id"], e.track.id.to_string(), "{name}");
            assert_eq!(g["max_c"].as_f64().unwrap(), e.hotspot.max_c, "{name}");
            assert_eq!(g["mean_c"].as_f64().unwrap(), e.hotspot.mean_c, "{name}");
            assert_eq!(g["severity"], e.severity.level, "{name}");
            assert_eq!(g["area_px"], e.hotspot.area_px, "{name}");
            assert_eq!(
                g["bbox"],
                serde_json::json!([
                    e.hotspot.bbox.x,
                    e.hotspot.bbox.y,
                    e.hotspot.bbox.w,
                    e.hotspot.bbox.h
                ]),
                "{name}"
            );
            assert_eq!(g["new"], true);
        }
        // And the reference implementation's hottest pixel (exiftool + Thermimage).
        let sample = &reference["samples"][name.as_str()];
        let want_max = match sample["frames"].as_array() {
            Some(frames) => frames[frame]["max_C"].as_f64().unwrap(),
            None => sample["references"]["exiftool+thermimage"]["max_C"]
                .as_f64()
                .unwrap(),
        };
        let max_c = file["max_c"].as_f64().unwrap();
        assert!(
            (max_c - want_max).abs() <= 0.01,
            "{name}: {max_c} vs {want_max}"
        );
        if let Some(hottest) = got.first() {
            let c = hottest["max_c"].as_f64().unwrap();
            assert!(
                (c - want_max).abs() <= 0.01,
                "{name}: hotspot {c} vs {want_max}"
            );
        }
        // Evidence: the original file, by its hash.
        assert_eq!(api.evidence.get(&sha).await.unwrap().unwrap(), bytes);
        let record = api.store.evidence(&sha).await.unwrap().unwrap();
        assert_eq!(record.size, bytes.len() as u64);
        total += got.len();
    }
    assert!(total > 0, "the hot fixtures give findings");
    assert_eq!(r.body["findings"], total);
    assert_eq!(r.body["new_findings"], total);
    // Stored as an upload, with the file's own time, one alert per region.
    let stored = api.stored().await;
    assert_eq!(stored.len(), total);
    for s in &stored {
        let f = &s.finding;
        assert_eq!(f.source, FindingSource::Upload);
        assert_eq!(f.gateway, "upload");
        assert_eq!(f.asset, None);
        // The files are years old: captured_at is the file's time, not the upload's.
        assert!(f.captured_at < chrono::Utc::now() - chrono::Duration::days(365));
        assert_eq!(
            s.batch_id.to_string(),
            r.body["upload_id"].as_str().unwrap()
        );
    }
    let alerts = api
        .store
        .list_alerts(&AlertQuery {
            site: Some(SITE.into()),
            limit: 1000,
            ..AlertQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(alerts.len(), total);
    // The live stream was told about exactly those alerts.
    let mut named = Vec::new();
    while let Ok(Change::Alerts(ids)) = changes.try_recv() {
        named.extend(ids);
    }
    named.sort();
    let mut ids: Vec<_> = alerts.iter().map(|a| a.id).collect();
    ids.sort();
    assert_eq!(named, ids);
    // One audit entry for the upload.
    let audit = api.store.list_audit(10).await.unwrap();
    let entries: Vec<_> = audit
        .iter()
        .filter(|a| a.event.action == "upload.create")
        .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].event.target, SITE);
    assert_eq!(entries[0].event.actor, "otto");
    assert_eq!(entries[0].event.detail["files"], names.len());
    assert_eq!(entries[0].event.detail["findings"], total);
}

async fn damaged_and_foreign_files_fail_alone(backend: &str) {
    let (api, _db) = Api::uploads(backend).await;
    let good = read_fixture("flir_t640_png.jpg");
    let seq = read_fixture("flir_sc660_2frames.seq");
    let truncated_jpeg = &good[..20_000];
    let truncated_seq = &seq[..seq.len() * 3 / 4];
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR not really an image";
    let form = Form::default()
        .site()
        .text("asset", ASSET)
        .text("note", "bay 3 survey, cloudy")
        .file("good.jpg", &good)
        .file("cut.jpg", truncated_jpeg)
        .file("cut.seq", truncated_seq)
        .file("notes.txt", b"not a thermogram at all")
        .file("photo.png", png)
        .file("", &[])
        .finish();
    let r = api.upload(form, api.as_operator()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let files = r.body["files"].as_array().unwrap();
    let status: Vec<_> = files
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["ok", "error", "error", "error", "error", "error"]);
    assert_eq!(files[5]["name"], "file 6");
    let error = |i: usize| {
        (
            files[i]["error"]["code"].as_str().unwrap().to_string(),
            files[i]["error"]["message"].as_str().unwrap().to_string(),
        )
    };
    let (code, message) = error(1);
    assert_eq!(code, "bad_request", "{message}");
    assert!(message.starts_with("malformed JPEG"), "{message}");
    let (code, message) = error(2);
    assert_eq!(code, "bad_request", "{message}");
    assert!(message.starts_with("frame 1:"), "{message}");
    for i in [3, 4, 5] {
        let (code, message) = error(i);
        assert_eq!(code, "unsupported_media_type", "{message}");
        assert!(
            message.starts_with("not a FLIR radiometric file"),
            "{message}"
        );
    }
    // The good file's findings, evidence and alerts are stored; the others left nothing.
    let findings = files[0]["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    let stored = api.findings().await;
    assert_eq!(stored.len(), findings.len());
    let sha = sha256_hex(&good);
    assert!(stored.iter().all(|f| f.asset.as_deref() == Some(ASSET)
        && f.evidence.as_ref().map(|e| e.sha256.as_str()) == Some(sha.as_str())));
    assert_eq!(api.evidence.get(&sha).await.unwrap().unwrap(), good);
    for file in &files[1..3] {
        let sha = file["sha256"].as_str().unwrap();
        assert!(api.store.evidence(sha).await.unwrap().is_none());
        assert!(!api.evidence.contains(sha).await.unwrap());
    }
    let alerts = api.store.list_alerts(&AlertQuery::default()).await.unwrap();
    assert_eq!(alerts.items.len(), findings.len());
    assert!(alerts
        .items
        .iter()
        .all(|a| a.asset.as_deref() == Some(ASSET) && a.gateway == "upload"));
    let audit = api.store.list_audit(10).await.unwrap();
    let entry = audit
        .iter()
        .find(|a| a.event.action == "upload.create")
        .unwrap();
    assert_eq!(entry.event.detail["files_failed"], 5);
    assert_eq!(entry.event.detail["note"], "bay 3 survey, cloudy");
    // The good file's findings have their own record, written with them.
    let per_file: Vec<_> = audit
        .iter()
        .filter(|a| a.event.action == "upload.file")
        .collect();
    assert_eq!(per_file.len(), 1);
    assert_eq!(per_file[0].event.detail["file"], "good.jpg");
    assert_eq!(per_file[0].event.detail["sha256"], sha.as_str());
    let recorded: Vec<String> = per_file[0].event.detail["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut stored_ids: Vec<String> = stored.iter().map(|f| f.id.to_string()).collect();
    stored_ids.sort();
    let mut recorded_sorted = recorded.clone();
    recorded_sorted.sort();
    assert_eq!(recorded_sorted, stored_ids);
}

/// Heavy work is bounded: a file whose frames declare more pixels than the hub's
/// budget fails alone (before decoding), and when every analysis slot is busy an
/// upload is 503 with `Retry-After`, its body unread.
async fn pixel_budgets_and_busy_slots_bound_the_work(backend: &str) {
    let (mut api, _db) = Api::uploads(backend).await;
    let seq = read_fixture("flir_sc660_2frames.seq");
    // One and a half 640×480 frames per file, one analysis at a time.
    api.state = api.state.clone().with_analysis_limits(
        chitti_common::flir::DEFAULT_MAX_FRAME_PIXELS,
        640 * 480 * 3 / 2,
        1,
    );
    api.app = mount(api.state.clone());
    let form = || Form::default().site().file("long.seq", &seq).finish();
    let r = api.upload(form(), api.as_operator()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let file = &r.body["files"][0];
    assert_eq!(file["status"], "error", "{file}");
    let message = file["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("frame 1 would take the file past its pixel budget: 640×480 pixels"),
        "{message}"
    );
    assert!(api.findings().await.is_empty());

    // Every slot busy (a long analysis elsewhere): 503, come back in 2 s.
    let busy = api.state.analysis_slot().expect("the one slot");
    let r = api.upload(form(), api.as_operator()).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(r.header("retry-after"), Some("2"));
    drop(busy);
    let r = api.upload(form(), api.as_operator()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

async fn uploading_a_file_again_stores_nothing_twice(backend: &str) {
    let (api, _db) = Api::uploads(backend).await;
    let form = || {
        Form::default()
            .site()
            .file("a.jpg", &read_fixture("flir_t420_png_640x480.jpg"))
            .finish()
    };
    let first = api.upload(form(), api.as_operator()).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let n = first.body["findings"].as_u64().unwrap();
    assert!(n > 0);
    assert_eq!(first.body["new_findings"], n);
    let alerts_before = api.store.list_alerts(&AlertQuery::default()).await.unwrap();
    let again = api.upload(form(), api.as_operator()).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_ne!(again.body["upload_id"], first.body["upload_id"]);
    assert_eq!(again.body["findings"], n);
    assert_eq!(again.body["new_findings"], 0);
    assert_eq!(
        again.body["files"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["id"].clone(), f["new"].clone()))
            .collect::<Vec<_>>(),
        first.body["files"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["id"].clone(), Value::Bool(false)))
            .collect::<Vec<_>>()
    );
    assert_eq!(api.findings().await.len() as u64, n);
    let alerts_after = api.store.list_alerts(&AlertQuery::default()).await.unwrap();
    assert_eq!(alerts_after.items, alerts_before.items, "alerts untouched");
}

async fn roles_sites_and_forms_are_checked(backend: &str) {
    let (api, _db) = Api::uploads(backend).await;
    let jpeg = read_fixture("flir_ax8_png_80x60.jpg");
    let good = || Form::default().site().file("a.jpg", &jpeg).finish();
    assert_error(
        &api.upload(
            good(),
            Send {
                token: Some(&api.viewer),
                ..api.as_operator()
            },
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &api.upload(
            good(),
            Send {
                token: None,
                ..api.as_operator()
            },
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let message = assert_error(
        &api.upload(
            Form::default()
                .text("site", "south-yard")
                .file("a.jpg", &jpeg)
                .finish(),
            api.as_operator(),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert!(message.contains("site south-yard"), "{message}");
    let message = assert_error(
        &api.upload(
            Form::default()
                .site()
                .text("asset", "no-such-asset")
                .file("a.jpg", &jpeg)
                .finish(),
            api.as_operator(),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert!(message.contains("asset no-such-asset"), "{message}");
    for (form, needle) in [
        (Form::default().file("a.jpg", &jpeg).finish(), "site"),
        (Form::default().site().finish(), "no file"),
        (
            Form::default()
                .site()
                .text("severity_table", "hottest-wins")
                .file("a.jpg", &jpeg)
                .finish(),
            "unknown severity table",
        ),
        (
            Form::default()
                .site()
                .text("severity_table", "neta-similar")
                .file("a.jpg", &jpeg)
                .finish(),
            "similar",
        ),
        (
            Form::default()
                .site()
                .text("reference_c", "warm")
                .file("a.jpg", &jpeg)
                .finish(),
            "reference_c",
        ),
        (
            Form::default()
                .site()
                .text("colour", "red")
                .file("a.jpg", &jpeg)
                .finish(),
            "unknown form field",
        ),
        (
            Form::default()
                .site()
                .file("a.jpg", &jpeg)
                .text("asset", ASSET)
                .finish(),
            "after the first file",
        ),
    ] {
        let message = assert_error(
            &api.upload(form, api.as_operator()).await,
            StatusCode::BAD_REQUEST,
            "bad_request",
        );
        assert!(message.contains(needle), "{message} ({needle})");
    }
    let not_multipart = Request::builder()
        .method("POST")
        .uri("/api/v1/uploads")
        .header("authorization", format!("Bearer {}", api.operator))
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_error(
        &api.send(not_multipart).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // A ΔT table with its reference works.
    let r = api
        .upload(
            Form::default()
                .site()
                .text("severity_table", "neta-similar")
                .text("reference_c", "20")
                .text("reference_kind", "similar")
                .file("a.jpg", &read_fixture("flir_t640_png.jpg"))
                .finish(),
            api.as_operator(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["severity_table"], "neta-similar");
    assert!(r.body["findings"].as_u64().unwrap() > 0);
    assert!(api
        .findings()
        .await
        .iter()
        .all(|f| f.severity.table == "neta-similar"
            && f.reference.similar.as_ref().map(|s| s.celsius) == Some(20.0)));
    // Audit entries for the uploads whose form was valid: the one that failed half-way
    // (a field after the first file, which was analysed) and this one.
    let audit = api.store.list_audit(100).await.unwrap();
    let entries: Vec<_> = audit
        .iter()
        .filter(|a| a.event.action == "upload.create")
        .collect();
    assert_eq!(entries.len(), 2);
    assert!(entries[1].event.detail["failed"]
        .as_str()
        .unwrap()
        .contains("after the first file"));
    assert_eq!(entries[0].event.detail["failed"], Value::Null);
}

async fn limits_hold_and_beat_the_global_body_limit(backend: &str) {
    // Uploads of at most 4 MiB, files of at most 1.2 MB.
    let t640 = read_fixture("flir_t640_png.jpg"); // 1.55 MB: above the global 1 MiB
    let t420 = read_fixture("flir_t420_png_640x480.jpg"); // 0.8 MB
    let (api, _db) = Api::uploads_with_limits(backend, 4 << 20, 1_200_000).await;
    // Above the global 1 MiB limit, within the upload limit: the route's limit wins.
    let r = api
        .upload(
            Form::default()
                .site()
                .file("a.jpg", &t420)
                .file("b.jpg", &t420[..1000])
                .file("c.jpg", &t640)
                .finish(),
            api.as_operator(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let files = r.body["files"].as_array().unwrap();
    assert_eq!(files[0]["status"], "ok");
    // Each file is held to the evidence limit: c.jpg is too large, and said so.
    assert_eq!(files[2]["status"], "error");
    assert_eq!(files[2]["error"]["code"], "payload_too_large");
    assert_eq!(files[2]["size"], t640.len());
    assert_eq!(files[2]["sha256"], Value::Null);
    // Above the upload limit: 413, declared or not.
    let big = || {
        Form::default()
            .site()
            .file("a.jpg", &t640)
            .file("b.jpg", &t640)
            .file("c.jpg", &t640)
            .finish()
    };
    for content_length in [true, false] {
        let r = api
            .upload(
                big(),
                Send {
                    content_length,
                    ..api.as_operator()
                },
            )
            .await;
        let message = assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
        assert!(message.contains("http.max_upload_bytes"), "{message}");
    }
    // And at most MAX_FILES files.
    let mut form = Form::default().site();
    for i in 0..=chitti_hub::api::uploads::MAX_FILES {
        form = form.file(&format!("{i}.txt"), b"x");
    }
    let message = assert_error(
        &api.upload(form.finish(), api.as_operator()).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert!(message.contains("more than 100 files"), "{message}");
}

async fn ndjson_streams_one_line_per_file_then_the_summary(backend: &str) {
    let (api, _db) = Api::uploads(backend).await;
    let form = Form::default()
        .site()
        .file("a.jpg", &read_fixture("flir_one_png_portrait.jpg"))
        .file("b.txt", b"plain text")
        .file("c.csq", &read_fixture("flir_t1030sc_8frames_jpegls.csq"))
        .finish();
    let r = api
        .upload(
            form,
            Send {
                ndjson: true,
                ..api.as_operator()
            },
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type(), "application/x-ndjson");
    let text = String::from_utf8(r.bytes).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    let names: Vec<_> = lines[..3]
        .iter()
        .map(|l| l["file"]["name"].clone())
        .collect();
    assert_eq!(names, ["a.jpg", "b.txt", "c.csq"]);
    assert_eq!(lines[0]["file"]["status"], "ok");
    assert_eq!(lines[1]["file"]["status"], "error");
    assert_eq!(lines[2]["file"]["status"], "ok");
    assert_eq!(lines[2]["file"]["frames"], 8);
    let summary = &lines[3]["summary"];
    assert_eq!(summary["site"], SITE);
    for i in 0..3 {
        assert_eq!(summary["files"][i], lines[i]["file"]);
    }
    let total: usize = (0..3)
        .map(|i| lines[i]["file"]["findings"].as_array().unwrap().len())
        .sum();
    assert_eq!(summary["findings"], total);
    assert_eq!(api.findings().await.len(), total);
    // Form errors are still plain API errors: nothing has been streamed yet.
    let r = api
        .upload(
            Form::default()
                .text("site", "south-yard")
                .file("a.jpg", b"x")
                .finish(),
            Send {
                ndjson: true,
                ..api.as_operator()
            },
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    // A failure half-way is the last line.
    let mut form = Form::default().site();
    for i in 0..=chitti_hub::api::uploads::MAX_FILES {
        form = form.file(&format!("{i}.txt"), b"x");
    }
    let r = api
        .upload(
            form.finish(),
            Send {
                ndjson: true,
                ..api.as_operator()
            },
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.bytes).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), chitti_hub::api::uploads::MAX_FILES + 1);
    assert_eq!(lines.last().unwrap()["error"]["code"], "bad_request");
}

async fn the_endpoint_is_described_in_openapi(backend: &str) {
    let (api, _db) = Api::uploads(backend).await;
    let r = api
        .send(
            Request::builder()
                .uri("/api/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let op = &r.body["paths"]["/api/v1/uploads"]["post"];
    assert_eq!(op["tags"][0], "uploads");
    assert!(op["requestBody"]["content"]["multipart/form-data"].is_object());
    for status in ["200", "400", "401", "403", "404", "413"] {
        assert!(op["responses"][status].is_object(), "{status}");
    }
    assert!(r.body["components"]["schemas"]["UploadResponse"].is_object());
}

support::on_both!(
    fixtures_give_the_thermal_cores_findings,
    damaged_and_foreign_files_fail_alone,
    pixel_budgets_and_busy_slots_bound_the_work,
    uploading_a_file_again_stores_nothing_twice,
    roles_sites_and_forms_are_checked,
    limits_hold_and_beat_the_global_body_limit,
    ndjson_streams_one_line_per_file_then_the_summary,
    the_endpoint_is_described_in_openapi
);
