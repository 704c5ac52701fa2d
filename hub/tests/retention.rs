//! The retention job on both stores, with a real evidence folder: what expired goes
//! (blobs from disk too), what is needed stays, the run is recorded, audited and in
//! `/metrics`; one replica at a time runs it; ingest goes on while it removes in
//! batches. Admins place and release holds through the API and see the runs.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chitti_hub::evidence::EvidenceStore;
use chitti_hub::retention::{RetentionConfig, RetentionJob};
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AlertEventKind, AnyStore, EvidenceRecord, NewAlertEvent};
use chrono::{Duration, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use support::{at, finding, ingested, Api, TestDb};
use tower::ServiceExt;
use uuid::Uuid;

fn config(batch_rows: u32) -> RetentionConfig {
    RetentionConfig {
        finding_days: 10,
        unreferenced_evidence_days: 10,
        batch_rows,
        ..RetentionConfig::default()
    }
}

/// Resolves the alert of `track`.
async fn resolve(store: &AnyStore, track: Uuid) {
    let alerts = store.list_alerts(&Default::default()).await.unwrap();
    let alert = alerts.items.iter().find(|a| a.track_id == track).unwrap();
    store
        .record_alert_event(&NewAlertEvent {
            alert_id: alert.id,
            kind: AlertEventKind::Resolve,
            actor: "otto".into(),
            at: at(1000),
            from_address: None,
            note: None,
            detail: None,
        })
        .await
        .unwrap();
}

/// A blob in the evidence folder and its index row, recorded at `at(0)`.
async fn blob(
    store: &AnyStore,
    dir: &std::path::Path,
    bytes: &[u8],
) -> (String, std::path::PathBuf) {
    let sha = hex::encode(Sha256::digest(bytes));
    let path = dir.join(&sha[..2]).join(&sha[2..4]).join(&sha);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    store
        .record_evidence(&EvidenceRecord {
            sha256: sha.clone(),
            size: bytes.len() as u64,
            content_type: "image/jpeg".into(),
            location: sha.clone(),
            created_at: at(0),
        })
        .await
        .unwrap();
    (sha, path)
}

async fn the_job_removes_what_expired_and_keeps_what_is_needed(backend: &str) {
    let db = TestDb::migrated(backend).await;
    let store = Arc::new(db.store.clone());
    let folder = tempfile::tempdir().unwrap();
    let evidence = Arc::new(EvidenceStore::local(folder.path(), 1 << 20).unwrap());
    let (old_blob, old_path) = blob(&store, folder.path(), b"old thermogram").await;
    let (kept_blob, kept_path) = blob(&store, folder.path(), b"kept thermogram").await;
    let (done, open) = (Uuid::now_v7(), Uuid::now_v7());
    let mut expired = finding(done, 2, 70.0, 0);
    expired.evidence = Some(chitti_common::finding::EvidenceRef {
        sha256: old_blob.clone(),
    });
    let mut needed = finding(open, 2, 70.0, 0);
    needed.evidence = Some(chitti_common::finding::EvidenceRef {
        sha256: kept_blob.clone(),
    });
    store
        .insert_findings(&ingested(&[expired, needed], at(0)))
        .await
        .unwrap();
    resolve(&store, done).await;

    let now = at(0) + Duration::days(30);
    let job = RetentionJob::new(store.clone(), evidence.clone(), config(100), "hub-a".into());
    let other = RetentionJob::new(store.clone(), evidence, config(100), "hub-b".into());
    let run = job
        .run_once(now)
        .await
        .unwrap()
        .expect("hub-a has the lease");
    assert_eq!(run.error, None);
    let r = &run.removed;
    assert_eq!(
        (
            r.findings,
            r.findings_kept,
            r.alerts,
            r.evidence,
            r.evidence_bytes
        ),
        (1, 1, 1, 1, 14)
    );
    assert!(!old_path.exists(), "the blob is deleted from the folder");
    assert!(kept_path.exists() && store.evidence(&kept_blob).await.unwrap().is_some());
    // The other replica waits its turn.
    assert!(other.run_once(now).await.unwrap().is_none());

    let recorded = store.retention_runs(5).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].removed, run.removed);
    let usage: Vec<&str> = recorded[0].usage.iter().map(|u| u.kind.as_str()).collect();
    assert_eq!(
        usage,
        [
            "findings",
            "alerts",
            "telemetry",
            "dead_letters",
            "audit_log",
            "evidence_index",
            "evidence_blobs"
        ]
    );
    let findings = &recorded[0].usage[0];
    assert_eq!(findings.rows, 1);
    assert!(findings.bytes > 0, "{findings:?}");
    let audited = store.list_audit(1).await.unwrap().remove(0);
    assert_eq!(audited.event.action, "retention.run");
    assert_eq!(audited.event.detail["removed"]["findings"], 1);
    assert!(store.verify_audit_chain().await.unwrap().is_intact());

    // Nothing left to do: a second run removes nothing.
    let again = job.run_once(now).await.unwrap().unwrap();
    assert_eq!(again.removed.findings + again.removed.evidence, 0);
}

async fn ingest_goes_on_while_the_job_removes_in_batches(backend: &str) {
    let db = TestDb::migrated(backend).await;
    let store = Arc::new(db.store.clone());
    let old_track = Uuid::now_v7();
    let old: Vec<_> = (0..3000).map(|i| finding(old_track, 2, 60.0, i)).collect();
    for chunk in old.chunks(1000) {
        store
            .insert_findings(&ingested(chunk, at(0)))
            .await
            .unwrap();
    }
    resolve(&store, old_track).await;
    let job = RetentionJob::new(
        store.clone(),
        Arc::new(EvidenceStore::in_memory(1 << 20)),
        config(100),
        "hub-a".into(),
    );
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let track = Uuid::now_v7();
            let mut ids = Vec::new();
            for _ in 0..40 {
                let batch: Vec<_> = (0..25).map(|i| finding(track, 2, 60.0, i)).collect();
                ids.extend(batch.iter().map(|f| f.id));
                store
                    .insert_findings(&ingested(&batch, Utc::now()))
                    .await
                    .expect("ingest is never refused while the job runs");
            }
            ids
        })
    };
    let run = job
        .run_once(Utc::now() + Duration::days(1))
        .await
        .unwrap()
        .unwrap();
    let new_ids = writer.await.unwrap();
    assert_eq!(run.removed.findings, 3000);
    for id in new_ids {
        assert!(store.finding(id).await.unwrap().is_some());
    }
    assert_eq!(store.count_findings().await.unwrap(), 1000);
}

async fn admins_place_and_release_holds_and_see_the_runs(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    let (otto, ada) = (api.bearer("otto").await, api.bearer("ada").await);
    let body = json!({"kind": "legal_hold", "site": "north-yard", "asset": "bay4-ct-a",
        "from": "2026-01-01T00:00:00Z", "reason": "claim 2026-118"});
    let r = api
        .call(
            "POST",
            "/api/v1/retention/holds",
            Some(&otto),
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let hold = api
        .ok(
            StatusCode::CREATED,
            "POST",
            "/api/v1/retention/holds",
            &ada,
            Some(body),
        )
        .await;
    assert_eq!(
        (&hold["kind"], &hold["asset"]),
        (&json!("legal_hold"), &json!("bay4-ct-a"))
    );
    assert!(hold["released_at"].is_null());
    for bad in [
        json!({"kind": "forever", "reason": "x"}),
        json!({"kind": "kept_report", "reason": "  "}),
        json!({"kind": "kept_report", "reason": "r", "from": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}),
        json!({"kind": "kept_report", "reason": "r", "site": "North Yard"}),
        json!({"kind": "kept_report", "reason": "r", "scope": "all"}),
    ] {
        let r = api
            .call(
                "POST",
                "/api/v1/retention/holds",
                Some(&ada),
                Some(bad.clone()),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", r.body);
    }
    let id = hold["id"].as_str().unwrap();
    let uri = format!("/api/v1/retention/holds/{id}/release");
    api.ok(StatusCode::NO_CONTENT, "POST", &uri, &ada, None)
        .await;
    let r = api.call("POST", &uri, Some(&ada), None, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "released already");
    let holds = api
        .ok(StatusCode::OK, "GET", "/api/v1/retention/holds", &ada, None)
        .await;
    assert_eq!(holds["items"][0]["released_by"], "ada");
    let actions: Vec<String> = api
        .audit_log()
        .await
        .iter()
        .map(|r| r.event.action.clone())
        .collect();
    assert_eq!(actions, ["retention.hold", "retention.release"]);

    // The runs and the policy.
    let job = RetentionJob::new(
        api.store.clone(),
        Arc::new(EvidenceStore::in_memory(1 << 20)),
        RetentionConfig::default(),
        "hub-a".into(),
    );
    job.run_once(Utc::now()).await.unwrap().unwrap();
    let status = api
        .ok(StatusCode::OK, "GET", "/api/v1/retention", &ada, None)
        .await;
    assert_eq!(status["policy"]["finding_days"], 1096);
    assert_eq!(status["runs"].as_array().unwrap().len(), 1);
    assert_eq!(status["runs"][0]["holder"], "hub-a");
    assert!(status["usage"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["kind"] == "findings"));
    let r = api
        .call("GET", "/api/v1/retention", Some(&otto), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The fleet page shows storage per kind.
    let (_, _, cookie) = api.login("otto").await;
    let html = api.page("/fleet", &cookie).await;
    assert!(html.contains("id=\"storage-table\""), "{html}");
    assert!(html.contains("data-kind=\"evidence_blobs\""));
}

support::on_both!(
    the_job_removes_what_expired_and_keeps_what_is_needed,
    ingest_goes_on_while_the_job_removes_in_batches,
    admins_place_and_release_holds_and_see_the_runs,
);

/// `/metrics` carries the newest run, whichever replica ran it.
#[tokio::test]
async fn metrics_show_the_newest_run_and_storage() {
    let db = TestDb::migrated("sqlite").await;
    let store = Arc::new(db.store.clone());
    let job = RetentionJob::new(
        store.clone(),
        Arc::new(EvidenceStore::in_memory(1 << 20)),
        RetentionConfig::default(),
        "hub-a".into(),
    );
    job.run_once(Utc::now()).await.unwrap().unwrap();
    let bus = chitti_hub::broker::ExternalBus::connect(chitti_hub::broker::ExternalSettings::new(
        "mqtt://127.0.0.1:1",
        "retention-metrics-test",
    ))
    .unwrap();
    let app = chitti_hub::http::router(chitti_hub::http::HttpState {
        store,
        ingest: Default::default(),
        notify: Default::default(),
        notifications: Default::default(),
        dashboard_url: None,
        bus: Arc::new(chitti_hub::broker::HubBus::External(bus)),
        started: std::time::Instant::now(),
        evidence: Arc::new(EvidenceStore::in_memory(1 << 20)),
        live: Arc::new(chitti_hub::live::LiveEvents::new(16)),
        settings: Default::default(),
        metrics_token: None,
        models: Default::default(),
        retention: Default::default(),
    });
    let mut request = Request::get("/metrics")
        .header("host", "127.0.0.1:8080")
        .body(Body::empty())
        .unwrap();
    request.extensions_mut().insert(axum::extract::ConnectInfo(
        "127.0.0.1:5000".parse::<std::net::SocketAddr>().unwrap(),
    ));
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("chitti_hub_retention_last_run_failed 0"),
        "{text}"
    );
    assert!(text.contains("chitti_hub_retention_last_run_removed{kind=\"findings\"} 0"));
    assert!(text.contains("chitti_hub_storage_bytes{kind=\"findings\"}"));
    assert!(text.contains("chitti_hub_retention_last_run_timestamp_seconds"));
}
