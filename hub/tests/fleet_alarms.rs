//! Fleet alarms on both stores: gateways report statuses and telemetry through the
//! store exactly as ingest writes them, the fleet watch decides at explicit instants
//! (`FleetWatch::pass`, so nothing waits on the wall clock), the notifier tells a real
//! HTTP receiver that checks every webhook signature, and operators act through the
//! API and the dashboard.

mod support;

use axum::http::StatusCode;
use chitti_common::protocol::{
    AgentStatus, BufferStatus, CameraStatus, EvictionCounts, EvidenceUploadStatus,
};
use chitti_hub::alarms::{assess, FleetWatch, WatchRules};
use chitti_hub::config::HubConfig;
use chitti_hub::notify::{Notifier, NotifyMetrics};
use chitti_hub::store::prelude::*;
use chitti_hub::store::{AlertKind, AlertRecord, AlertStatus, AnyStore, StatusOutcome};
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use support::receiver::{Receiver, WEBHOOK_SECRET};
use support::*;

const SITE: &str = "north-yard";
const GW: &str = "gw-07";

/// The hub's file: offline after 120 s, cameras stalled after 300 s, `north-yard`'s
/// cameras at level 4, and a rule sending every fleet alarm to a webhook.
fn config(receiver: Option<&Receiver>) -> HubConfig {
    let url = receiver.map_or("https://example.net/hook".to_string(), |r| r.url("webhook"));
    let text = format!(
        r#"
version = 1
[ingest]
offline_after_s = 120
[alarms]
camera_stalled_after_s = 300
outbox_pressure_share = 0.8
evidence_failing_after_s = 900
clock_skew_max_s = 60
[[alarms.sites]]
site = "north-yard"
camera_stalled = 4
[notifications]
dashboard_url = "https://hub.example.net"
[[notifications.channels]]
id = "noc"
kind = "webhook"
url = "{url}"
secret = "{WEBHOOK_SECRET}"
[[notifications.rules]]
id = "fleet"
min_level = 1
kinds = ["fleet"]
channels = ["noc"]
"#
    );
    HubConfig::from_toml(&text, "hub.toml", std::path::Path::new("/")).unwrap()
}

/// Now, to the store's precision (microseconds), so times read back compare equal.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn rules() -> WatchRules {
    config(None).watch_rules()
}

fn watch(api: &Api) -> FleetWatch<AnyStore> {
    FleetWatch::new(Arc::clone(&api.store), rules(), Some(Arc::clone(&api.live)))
}

fn healthy(ts: DateTime<Utc>, session: DateTime<Utc>) -> AgentStatus {
    AgentStatus {
        online: true,
        agent_version: "0.4.2".into(),
        cameras: vec![CameraStatus {
            id: "cam-1".into(),
            state: "streaming".into(),
            fps: 8.7,
            last_frame_at: Some(ts - Duration::milliseconds(100)),
        }],
        buffer: Some(BufferStatus {
            depth: 3,
            bytes: 100,
            oldest_at: None,
            evicted: EvictionCounts::default(),
            cap_bytes: Some(1000),
        }),
        model: None,
        detector: Some("ok (yolo-thermal 3)".into()),
        config_version: None,
        model_update: None,
        evidence: Some(EvidenceUploadStatus {
            uploaded: 4,
            failures: 0,
            failing_since: None,
            last_error: None,
        }),
        ts,
        session: Some(session),
    }
}

/// Applies a status received at `received` (its own `ts` says what the gateway's
/// clock said).
async fn report(api: &Api, status: &AgentStatus, received: DateTime<Utc>) {
    let outcome = api
        .store
        .update_gateway_status(SITE, GW, status, received)
        .await
        .unwrap();
    assert_eq!(outcome, StatusOutcome::Applied);
}

async fn unresolved(api: &Api) -> Vec<AlertRecord> {
    api.store.unresolved_fleet_alarms().await.unwrap()
}

fn of(alarms: &[AlertRecord], kind: AlertKind) -> &AlertRecord {
    alarms
        .iter()
        .find(|a| a.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} alarm in {alarms:#?}"))
}

async fn a_silent_gateway_goes_offline_and_its_return_ends_the_alarm_with_the_outage(
    backend: &str,
) {
    let (api, _db) = Api::new(backend).await;
    api.enrol(SITE, GW).await;
    let receiver = support::receiver::start().await;
    let notifier = Notifier::new(
        Arc::clone(&api.store),
        config(Some(&receiver)).notifications,
        None,
        Arc::new(NotifyMetrics::default()),
        api.live.alert_signal(),
    )
    .unwrap();
    let w = watch(&api);
    let t0 = now() - Duration::hours(1);
    report(&api, &healthy(t0, t0), t0).await;
    // Heard from 119 s ago: still online.
    let pass = w.pass(t0 + Duration::seconds(119)).await.unwrap();
    assert!(pass.raised.is_empty(), "{pass:#?}");

    let t1 = t0 + Duration::seconds(121);
    let pass = w.pass(t1).await.unwrap();
    assert_eq!(pass.raised.len(), 1, "{pass:#?}");
    let alarm = &pass.raised[0];
    assert_eq!(
        (
            alarm.kind,
            alarm.worst_level,
            alarm.status,
            alarm.camera.as_str()
        ),
        (AlertKind::GatewayOffline, 3, AlertStatus::Open, "")
    );
    assert_eq!(
        alarm.first_finding_at, t0,
        "the outage began when it fell silent"
    );
    assert!(
        alarm
            .detail
            .as_deref()
            .unwrap()
            .contains("nothing heard since"),
        "{alarm:?}"
    );
    assert_eq!((alarm.worst_max_c, alarm.finding_count), (None, 0));
    let detail = alarm.detail.clone();
    // Silent: offline wherever the gateway is shown, as if its Last Will had come.
    let g = api.store.gateway(SITE, GW).await.unwrap().unwrap();
    assert!(!g.online);
    // A second look raises nothing more; a second replica neither.
    assert!(w
        .pass(t1 + Duration::seconds(10))
        .await
        .unwrap()
        .raised
        .is_empty());
    assert!(watch(&api)
        .pass(t1 + Duration::seconds(20))
        .await
        .unwrap()
        .raised
        .is_empty());
    let still = unresolved(&api).await;
    assert_eq!(still.len(), 1);
    assert_eq!(
        still[0].detail, detail,
        "marked offline, still a silence, not a Last Will"
    );

    notifier.pass(t1 + Duration::seconds(20)).await.unwrap();
    let hooks = receiver.taken("webhook");
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    assert_eq!(hooks[0].body["type"], "alert.raised");
    let data = &hooks[0].body["data"];
    assert_eq!(data["alert"]["kind"], "gateway_offline");
    assert_eq!(data["alert"]["id"], alarm.id.to_string());
    assert!(
        data["summary"]
            .as_str()
            .unwrap()
            .contains("gateway offline"),
        "{data}"
    );
    assert!(
        data["links"].get("thermogram").is_none(),
        "no finding, no thermogram"
    );

    // Back 4 min 12 s after it fell silent.
    let back = t0 + Duration::seconds(252);
    report(&api, &healthy(back, back - Duration::seconds(5)), back).await;
    assert!(api.store.gateway(SITE, GW).await.unwrap().unwrap().online);
    let pass = w.pass(back + Duration::seconds(1)).await.unwrap();
    assert_eq!(pass.ended.len(), 1, "{pass:#?}");
    let ended = api.store.alert(alarm.id).await.unwrap().unwrap();
    assert_eq!(ended.status, AlertStatus::Resolved);
    assert_eq!(ended.cleared_at, Some(back + Duration::seconds(1)));
    assert_eq!(
        ended.outage(Utc::now()),
        Some(Duration::seconds(253)),
        "the outage's duration is kept"
    );
    let trail = api.store.alert_events(alarm.id).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].event.actor, "hub");
    assert_eq!(
        trail[0].event.note.as_deref(),
        Some("gateway back online after 4 min 13 s")
    );
    assert!(unresolved(&api).await.is_empty());

    notifier.pass(back + Duration::seconds(2)).await.unwrap();
    let hooks = receiver.taken("webhook");
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[1].body["type"], "alert.resolved");
    assert_eq!(hooks[1].body["data"]["alert"]["duration_s"], 253);
    assert!(receiver.received().iter().all(|r| r.answered == 200));

    // Silent again: a new alarm, a new episode.
    let again = w.pass(back + Duration::seconds(200)).await.unwrap();
    assert_eq!(again.raised.len(), 1);
    assert_ne!(again.raised[0].id, alarm.id);
}

async fn a_last_will_raises_offline_at_once_and_leaves_the_other_alarms_as_they_were(
    backend: &str,
) {
    let (api, _db) = Api::new(backend).await;
    api.enrol(SITE, GW).await;
    let w = watch(&api);
    let t0 = now() - Duration::hours(1);
    let mut degraded = healthy(t0, t0);
    degraded.detector = Some("degraded (model /opt/chitti/model.onnx: not found)".into());
    report(&api, &degraded, t0).await;
    let pass = w.pass(t0 + Duration::seconds(1)).await.unwrap();
    assert_eq!(pass.raised.len(), 1);
    assert_eq!(pass.raised[0].kind, AlertKind::DetectorDegraded);
    assert_eq!(pass.raised[0].worst_level, 2);

    // The broker publishes the Last Will: stamped with the session start.
    let will = AgentStatus {
        online: false,
        ts: t0,
        ..degraded.clone()
    };
    report(&api, &will, t0 + Duration::seconds(30)).await;
    let pass = w.pass(t0 + Duration::seconds(31)).await.unwrap();
    assert_eq!(pass.raised.len(), 1, "offline at once, not after 120 s");
    assert!(
        pass.ended.is_empty(),
        "what an offline gateway said is not news"
    );
    let alarms = unresolved(&api).await;
    assert!(of(&alarms, AlertKind::GatewayOffline)
        .detail
        .as_deref()
        .unwrap()
        .contains("Last Will"));
    of(&alarms, AlertKind::DetectorDegraded);

    // A new session with a working detector ends both.
    let t1 = t0 + Duration::seconds(90);
    report(&api, &healthy(t1, t1), t1).await;
    let pass = w.pass(t1 + Duration::seconds(1)).await.unwrap();
    let mut ended: Vec<_> = pass.ended.iter().map(|a| a.kind).collect();
    ended.sort_by_key(|k| k.as_str());
    assert_eq!(
        ended,
        vec![AlertKind::DetectorDegraded, AlertKind::GatewayOffline]
    );
    let detector = pass
        .ended
        .iter()
        .find(|a| a.kind == AlertKind::DetectorDegraded)
        .unwrap();
    let trail = api.store.alert_events(detector.id).await.unwrap();
    assert_eq!(
        trail[0].event.note.as_deref(),
        Some("detector degraded cleared after 1 min 30 s")
    );
}

async fn cameras_outboxes_evidence_and_clocks_raise_their_alarms_and_clear_them(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.enrol(SITE, GW).await;
    let w = watch(&api);
    let t0 = now() - Duration::hours(2);
    // The gateway's clock runs 90 s ahead: its ts are 90 s past the hub's receipt.
    let ahead = Duration::seconds(90);
    let mut sick = healthy(t0 + ahead, t0);
    sick.cameras = vec![
        CameraStatus {
            id: "cam-1".into(),
            state: "reconnecting: no frame for 10s".into(),
            fps: 0.0,
            last_frame_at: Some(t0 + ahead - Duration::seconds(400)),
        },
        // Streaming but its latest frame is old: frozen pipeline.
        CameraStatus {
            id: "cam-2".into(),
            state: "streaming".into(),
            fps: 0.0,
            last_frame_at: Some(t0 + ahead - Duration::seconds(299)),
        },
        // A folder waiting for files delivers nothing by design.
        CameraStatus {
            id: "drone-drop".into(),
            state: "watching".into(),
            fps: 0.0,
            last_frame_at: None,
        },
    ];
    sick.buffer = Some(BufferStatus {
        depth: 4000,
        bytes: 850,
        oldest_at: None,
        evicted: EvictionCounts::default(),
        cap_bytes: Some(1000),
    });
    sick.evidence = Some(EvidenceUploadStatus {
        uploaded: 0,
        failures: 31,
        failing_since: Some(t0 + ahead - Duration::seconds(1000)),
        last_error: Some("hub answered 503 for evidence ab12".into()),
    });
    report(&api, &sick, t0).await;
    let pass = w.pass(t0 + Duration::seconds(2)).await.unwrap();
    let alarms = unresolved(&api).await;
    assert_eq!(alarms.len(), 5, "{alarms:#?}");
    assert_eq!(pass.raised.len(), 5);
    let cameras: Vec<_> = alarms
        .iter()
        .filter(|a| a.kind == AlertKind::CameraStalled)
        .collect();
    assert_eq!(
        cameras.len(),
        2,
        "cam-1 and cam-2 (299 s + 2 s): {cameras:#?}"
    );
    let cam1 = cameras.iter().find(|a| a.camera == "cam-1").unwrap();
    assert_eq!(cam1.worst_level, 4, "north-yard's own level");
    assert_eq!(cam1.first_finding_at, t0 - Duration::seconds(400));
    assert!(cam1.detail.as_deref().unwrap().contains("reconnecting"));
    let outbox = of(&alarms, AlertKind::OutboxPressure);
    assert_eq!(outbox.worst_level, 2);
    assert!(
        outbox
            .detail
            .as_deref()
            .unwrap()
            .contains("85 % of its 1000 byte cap"),
        "{outbox:?}"
    );
    let evidence = of(&alarms, AlertKind::EvidenceUploadFailing);
    assert!(evidence.detail.as_deref().unwrap().contains("503"));
    let clock = of(&alarms, AlertKind::ClockSkew);
    assert_eq!(clock.worst_level, 1);
    assert!(
        clock.detail.as_deref().unwrap().contains("90 s ahead of"),
        "{clock:?}"
    );

    // An eviction keeps the outbox alarm up even below the share.
    let t1 = t0 + Duration::seconds(30);
    let mut evicting = sick.clone();
    evicting.ts = t1 + ahead;
    evicting.buffer = Some(BufferStatus {
        depth: 10,
        bytes: 100,
        oldest_at: None,
        evicted: EvictionCounts {
            evidence: 2,
            findings: 0,
        },
        cap_bytes: Some(1000),
    });
    report(&api, &evicting, t1).await;
    w.pass(t1 + Duration::seconds(1)).await.unwrap();
    let outbox = of(&unresolved(&api).await, AlertKind::OutboxPressure).clone();
    assert!(
        outbox
            .detail
            .as_deref()
            .unwrap()
            .contains("evicting since start: 2 evidence"),
        "{outbox:?}"
    );

    // All well, the clock set right (a status must still be newer than the last,
    // which said t0 + 120 s); the eviction hold (900 s) ends later.
    let t2 = t0 + Duration::seconds(200);
    let mut well = healthy(t2, t0);
    well.buffer.as_mut().unwrap().evicted.evidence = 2;
    report(&api, &well, t2).await;
    let pass = w.pass(t2 + Duration::seconds(1)).await.unwrap();
    assert_eq!(pass.ended.len(), 4, "{pass:#?}");
    assert_eq!(unresolved(&api).await[0].kind, AlertKind::OutboxPressure);
    let t3 = t1 + Duration::seconds(901);
    report(&api, &healthy(t3, t0), t3).await;
    let pass = w.pass(t3).await.unwrap();
    assert_eq!(pass.ended.len(), 1);
    assert!(unresolved(&api).await.is_empty());
}

/// A gateway clock behind the hub reads exactly like messages delivered late; only two
/// agreeing measurements raise the alarm.
async fn a_clock_behind_is_an_alarm_only_when_two_measurements_agree(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    api.enrol(SITE, GW).await;
    let w = watch(&api);
    let t0 = now() - Duration::hours(1);
    // Telemetry queued while the hub was away, delivered at once: 300, 240, 180 s late.
    report(&api, &healthy(t0, t0), t0).await;
    for (i, late) in [300, 240, 180].into_iter().enumerate() {
        let received = t0 + Duration::seconds(400) + Duration::milliseconds(i as i64);
        let sent = received - Duration::seconds(late);
        api.store
            .heard_from(SITE, GW, sent, received)
            .await
            .unwrap();
        let pass = w.pass(received).await.unwrap();
        assert!(pass.raised.is_empty(), "late by {late} s: {pass:#?}");
    }
    // A clock 5 min behind: every message agrees.
    for i in 0..2 {
        let received = t0 + Duration::seconds(500 + 60 * i);
        api.store
            .heard_from(SITE, GW, received - Duration::seconds(300), received)
            .await
            .unwrap();
    }
    let pass = w.pass(t0 + Duration::seconds(561)).await.unwrap();
    assert_eq!(pass.raised.len(), 1);
    assert_eq!(pass.raised[0].kind, AlertKind::ClockSkew);
    assert!(pass.raised[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("300 s behind"));
}

async fn operators_act_on_fleet_alarms_in_the_queue_but_a_resolved_one_stays_resolved(
    backend: &str,
) {
    let (api, _db) = Api::new(backend).await;
    api.enrol(SITE, GW).await;
    let hot = api.alert().await;
    let w = watch(&api);
    let t0 = now() - Duration::minutes(10);
    report(&api, &healthy(t0, t0), t0).await;
    let alarm = w.pass(t0 + Duration::seconds(130)).await.unwrap().raised[0].id;
    let (otto, _, cookie) = api.login("otto").await;

    let fleet = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/alerts?kind=fleet",
            &otto,
            None,
        )
        .await;
    let items = fleet["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{fleet}");
    assert_eq!(items[0]["id"], alarm.to_string());
    assert_eq!(items[0]["kind"], "gateway_offline");
    assert_eq!(items[0]["worst_max_c"], serde_json::Value::Null);
    assert_eq!(items[0]["severity_table"], serde_json::Value::Null);
    assert!(items[0]["detail"]
        .as_str()
        .unwrap()
        .contains("nothing heard"));
    assert!(items[0]["duration_s"].as_i64().unwrap() >= 130);
    let thermal = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/alerts?kind=thermal",
            &otto,
            None,
        )
        .await;
    let ids: Vec<_> = thermal["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(ids, vec![serde_json::json!(hot.to_string())]);
    let offline = api
        .ok(
            StatusCode::OK,
            "GET",
            "/api/v1/alerts?kind=gateway_offline",
            &otto,
            None,
        )
        .await;
    assert_eq!(offline["items"].as_array().unwrap().len(), 1);
    let bad = api
        .get("/api/v1/alerts?kind=outage", Some(&otto), None)
        .await;
    let message = assert_error(&bad, StatusCode::BAD_REQUEST, "bad_request");
    assert!(message.contains("kind \"outage\""), "{message}");

    let overview = api.page("/", &cookie).await;
    assert!(overview.contains("1 fleet alarms open"), "{overview}");
    assert!(
        overview.contains("L3 gateway offline</span> north-yard/gw-07"),
        "{overview}"
    );

    // Acknowledged, commented, assigned: the same workflow as any alert.
    for (action, body) in [
        (
            "acknowledge",
            serde_json::json!({"note": "substation power cut, crew sent"}),
        ),
        ("assign", serde_json::json!({"assignee": "olga"})),
    ] {
        let r = api
            .call(
                "POST",
                &format!("/api/v1/alerts/{alarm}/{action}"),
                Some(&otto),
                Some(body),
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "{action}: {:?}", r.body);
    }
    let page = api.page(&format!("/alerts/{alarm}"), &cookie).await;
    assert!(page.contains("L3 gateway offline"), "{page}");
    assert!(page.contains("nothing heard since"));
    assert!(!page.contains("°C"), "a fleet alarm has no temperature");
    let queue = api.page("/alerts?kind=fleet", &cookie).await;
    assert!(
        queue.contains("north-yard · gw-07 · gateway offline"),
        "{queue}"
    );

    // Back: the hub ends it; reopening it would stand beside the next one.
    let back = t0 + Duration::seconds(200);
    report(&api, &healthy(back, back), back).await;
    assert_eq!(w.pass(back).await.unwrap().ended.len(), 1);
    let r = api
        .call(
            "POST",
            &format!("/api/v1/alerts/{alarm}/reopen"),
            Some(&otto),
            None,
            &[],
        )
        .await;
    let message = assert_error(&r, StatusCode::CONFLICT, "conflict");
    assert!(message.contains("fleet alarm"), "{message}");

    // A revoked gateway's alarms end with it.
    let pass = w.pass(back + Duration::seconds(200)).await.unwrap();
    assert_eq!(pass.raised.len(), 1);
    assert!(api.store.revoke_gateway(SITE, GW).await.unwrap());
    let pass = w.pass(back + Duration::seconds(201)).await.unwrap();
    assert_eq!(pass.ended.len(), 1);
    let trail = api.store.alert_events(pass.ended[0].id).await.unwrap();
    assert!(trail[0]
        .event
        .note
        .as_deref()
        .unwrap()
        .starts_with("gateway revoked"));
}

/// Two hub replicas watching at the same instant raise each alarm once.
async fn two_replicas_raise_each_alarm_once(backend: &str) {
    let (api, _db) = Api::new(backend).await;
    for gw in ["gw-01", "gw-02", "gw-03"] {
        api.enrol(SITE, gw).await;
    }
    let t0 = now() - Duration::hours(1);
    for gw in ["gw-01", "gw-02", "gw-03"] {
        api.store
            .update_gateway_status(SITE, gw, &healthy(t0, t0), t0)
            .await
            .unwrap();
    }
    let (a, b) = (watch(&api), watch(&api));
    let now = t0 + Duration::seconds(500);
    let (ra, rb) = tokio::join!(a.pass(now), b.pass(now));
    let raised = ra.unwrap().raised.len() + rb.unwrap().raised.len();
    assert_eq!(raised, 3);
    assert_eq!(unresolved(&api).await.len(), 3);
    for gw in ["gw-01", "gw-02", "gw-03"] {
        let back = now + Duration::seconds(1);
        api.store
            .update_gateway_status(SITE, gw, &healthy(back, back), back)
            .await
            .unwrap();
    }
    let later = now + Duration::seconds(2);
    let (ra, rb) = tokio::join!(a.pass(later), b.pass(later));
    assert_eq!(ra.unwrap().ended.len() + rb.unwrap().ended.len(), 3);
}

/// The fleet-alarm migration (a table rebuild on SQLite) keeps every alert with its
/// trail, transitions and notifications, as `hotspot` alerts.
async fn a_store_with_alerts_migrates_keeping_every_alert_and_its_trail(backend: &str) {
    use chitti_hub::store::Db;
    let db = TestDb::fresh(backend).await;
    let store = &db.store;
    let dir = format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
    let mut before = sqlx::migrate::Migrator::new(std::path::Path::new(&dir))
        .await
        .unwrap();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 20270103000000)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    match store.db() {
        Db::Sqlite(pool) => before.run(pool).await.unwrap(),
        Db::Postgres(pool) => before.run(pool).await.unwrap(),
    }
    // On SQLite today's insert writes `delta_c`, which a later migration adds: give the
    // old schema the column for the insert and take it away again before migrating.
    let delta_column = |sql: &'static str| async move {
        if let Db::Sqlite(pool) = store.db() {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
    };
    delta_column("ALTER TABLE findings ADD COLUMN delta_c REAL").await;
    let (cool, hot) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    store
        .insert_findings(&ingested(
            &[
                cool_finding(cool, 21.0, 14.0, 0),
                finding(hot, 2, 61.0, 0),
                finding(hot, 3, 75.0, 1000),
            ],
            at(0),
        ))
        .await
        .unwrap();
    delta_column("ALTER TABLE findings DROP COLUMN delta_c").await;
    // The store's own queries know the new columns: the old schema is written raw.
    let count = |table: &'static str| async move {
        let sql = format!("SELECT count(*) FROM {table}");
        match store.db() {
            Db::Sqlite(pool) => sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await,
            Db::Postgres(pool) => sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await,
        }
        .unwrap()
    };
    let trail = "INSERT INTO alert_events (alert_id, kind, actor, at, note) \
                 SELECT id, 'acknowledge', 'olga', $1, 'crew sent' FROM alerts";
    match store.db() {
        Db::Sqlite(pool) => sqlx::query(trail)
            .bind(5_000_i64)
            .execute(pool)
            .await
            .map(|_| ()),
        Db::Postgres(pool) => sqlx::query(trail)
            .bind(at(5000))
            .execute(pool)
            .await
            .map(|_| ()),
    }
    .unwrap();
    let transitions = count("alert_transitions").await;
    assert_eq!((count("alerts").await, count("alert_events").await), (2, 2));
    assert!(transitions >= 2, "raised transitions reference the alerts");

    store.migrate().await.unwrap();
    let mut after = store.list_alerts(&Default::default()).await.unwrap().items;
    after.sort_by_key(|a| a.worst_level);
    assert!(
        after.iter().all(|a| a.kind == AlertKind::Hotspot),
        "{after:#?}"
    );
    let shape: Vec<_> = after
        .iter()
        .map(|a| {
            (
                a.presented_kind(),
                a.worst_level,
                a.worst_max_c,
                a.finding_count,
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("cool_exception", 0, Some(21.0), 1),
            ("hotspot", 3, Some(75.0), 2)
        ]
    );
    assert_eq!(count("alert_transitions").await, transitions);
    for a in &after {
        assert!(a.last_finding_id.is_some() && a.severity_table.is_some());
        let trail = store.alert_events(a.id).await.unwrap();
        assert_eq!(trail.len(), 1);
        assert_eq!(trail[0].event.note.as_deref(), Some("crew sent"));
    }
    if let Db::Sqlite(pool) = store.db() {
        let broken: Vec<(String,)> =
            sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_check")
                .fetch_all(pool)
                .await
                .unwrap();
        assert!(broken.is_empty(), "{broken:?}");
    }
    // The new rules hold on the migrated table: a fleet alarm needs no finding, a
    // hotspot must have one.
    let w = FleetWatch::new(Arc::new(store.clone()), rules(), None);
    api_free_enrol(store).await;
    let t0 = now() - Duration::hours(1);
    store
        .update_gateway_status(SITE, GW, &healthy(t0, t0), t0)
        .await
        .unwrap();
    assert_eq!(
        w.pass(t0 + Duration::seconds(500))
            .await
            .unwrap()
            .raised
            .len(),
        1
    );
}

async fn api_free_enrol(store: &AnyStore) {
    support::enrol(store, SITE, GW, [7; 32]).await;
}

#[test]
fn a_gateway_never_heard_from_or_revoked_has_no_conditions() {
    let gateway = chitti_hub::store::GatewayRecord {
        site: SITE.into(),
        gateway: GW.into(),
        password_hash: String::new(),
        public_key: [0; 32],
        created_at: Utc::now(),
        revoked_at: None,
        online: false,
        last_seen_at: None,
        status_at: None,
        agent_version: None,
        config_version: None,
        model: None,
        buffer: None,
        cameras: Vec::new(),
        last_status: None,
        clock_offset_ms: None,
        clock_offset_prev_ms: None,
        evicted_at: None,
    };
    let assessment = assess(&gateway, &rules(), Utc::now());
    assert!(
        assessment.conditions.is_empty(),
        "enrolled, not yet installed"
    );
    assert_eq!(assessment.decided, AlertKind::FLEET.to_vec());
}

#[test]
fn alarm_settings_are_checked_all_at_once() {
    let text = r#"
version = 1
[alarms]
check_interval_s = 0
outbox_pressure_share = 1.5
disabled_kinds = ["hotspot", "nap"]
[alarms.levels]
clock_skew = 9
[[alarms.sites]]
site = "north-yard"
gateway_offline = 5
[[alarms.sites]]
site = "north-yard"
"#;
    let err = HubConfig::from_toml(text, "hub.toml", std::path::Path::new("/"))
        .unwrap_err()
        .to_string();
    for expected in [
        "alarms.check_interval_s: must be at least 1",
        "alarms.outbox_pressure_share: 1.5 is not a share in (0, 1]",
        "alarms.disabled_kinds[0]: unknown fleet alarm \"hotspot\"",
        "alarms.disabled_kinds[1]: unknown fleet alarm \"nap\"",
        "alarms.levels.clock_skew: must be 0–4",
        "alarms.sites[0].gateway_offline: must be 0–4",
        "alarms.sites[1].site: \"north-yard\" appears twice",
    ] {
        assert!(err.contains(expected), "{expected:?} missing from:\n{err}");
    }
    let unknown = HubConfig::from_toml(
        "version = 1\n[alarms]\noffline_after_s = 3\n",
        "hub.toml",
        std::path::Path::new("/"),
    )
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("offline_after_s"), "{unknown}");
}

/// A configuration the gateway rejected, then one it rolled back, are one
/// `config_failed` alarm (its detail follows); a newer version it applies ends it.
async fn a_rejected_or_rolled_back_configuration_is_an_alarm_until_the_newest_runs(backend: &str) {
    use chitti_common::protocol::{ConfigState, ConfigStatus};
    let (api, _db) = Api::new(backend).await;
    api.enrol(SITE, GW).await;
    let w = watch(&api);
    let t0 = now() - Duration::hours(1);
    report(&api, &healthy(t0, t0), t0).await;
    let doc = format!(
        "version = 1\n[identity]\nsite = \"{SITE}\"\ngateway = \"{GW}\"\n[[camera]]\nid = \"cam-1\"\n[camera.source]\nkind = \"simulated\"\n"
    );
    let save = |expected: i64| {
        let (store, doc) = (Arc::clone(&api.store), doc.clone());
        async move {
            store
                .save_desired_config(SITE, GW, expected, &doc, "ada", "", t0)
                .await
                .unwrap()
        }
    };
    let state =
        |version: u64, status: ConfigStatus, applied: Option<u64>, ts: DateTime<Utc>| ConfigState {
            version,
            status,
            errors: match status {
                ConfigStatus::Applied => Vec::new(),
                _ => vec![
                    "camera[0].source.path: /srv/drops is not a folder".into(),
                    "mqtt.url: the gateway keeps its own value".into(),
                ],
            },
            applied_version: applied,
            applied_at: None,
            config: None,
            ts,
        };
    assert_eq!(save(0).await, 1);
    let t1 = t0 + Duration::seconds(5);
    api.store
        .apply_config_state(SITE, GW, &state(1, ConfigStatus::Rejected, None, t1), t1)
        .await
        .unwrap();
    report(&api, &healthy(t1, t0), t1).await;
    let pass = w.pass(t1).await.unwrap();
    assert_eq!(pass.raised.len(), 1, "{pass:#?}");
    let alarm = &pass.raised[0];
    assert_eq!(
        (alarm.kind, alarm.worst_level),
        (AlertKind::ConfigFailed, 2)
    );
    assert_eq!(
        alarm.detail.as_deref(),
        Some("configuration version 1 rejected: camera[0].source.path: /srv/drops is not a folder (and 1 more)")
    );
    // Version 2 is saved and rolled back: the same alarm, its detail updated.
    assert_eq!(save(1).await, 2);
    let t2 = t0 + Duration::seconds(10);
    api.store
        .apply_config_state(SITE, GW, &state(2, ConfigStatus::RolledBack, None, t2), t2)
        .await
        .unwrap();
    report(&api, &healthy(t2, t0), t2).await;
    let pass = w.pass(t2).await.unwrap();
    assert!(pass.raised.is_empty() && pass.ended.is_empty(), "{pass:#?}");
    let open = unresolved(&api).await;
    assert!(of(&open, AlertKind::ConfigFailed)
        .detail
        .as_deref()
        .unwrap()
        .starts_with("configuration version 2 rolled back"));
    // Version 3 runs: the alarm ends.
    assert_eq!(save(2).await, 3);
    let t3 = t0 + Duration::seconds(15);
    api.store
        .apply_config_state(SITE, GW, &state(3, ConfigStatus::Applied, Some(3), t3), t3)
        .await
        .unwrap();
    report(&api, &healthy(t3, t0), t3).await;
    let pass = w.pass(t3).await.unwrap();
    assert_eq!(pass.ended.len(), 1, "{pass:#?}");
    assert_eq!(pass.ended[0].kind, AlertKind::ConfigFailed);
    assert!(unresolved(&api).await.is_empty());
}

on_both!(
    a_rejected_or_rolled_back_configuration_is_an_alarm_until_the_newest_runs,
    a_silent_gateway_goes_offline_and_its_return_ends_the_alarm_with_the_outage,
    a_last_will_raises_offline_at_once_and_leaves_the_other_alarms_as_they_were,
    cameras_outboxes_evidence_and_clocks_raise_their_alarms_and_clear_them,
    a_clock_behind_is_an_alarm_only_when_two_measurements_agree,
    operators_act_on_fleet_alarms_in_the_queue_but_a_resolved_one_stays_resolved,
    two_replicas_raise_each_alarm_once,
    a_store_with_alerts_migrates_keeping_every_alert_and_its_trail,
);
