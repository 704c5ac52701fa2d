//! Ingest against real stores (SQLite and Postgres): signed batches stored once and
//! acked after commit, every kind of bad input dead-lettered with the process alive, and
//! gateways' configuration states believed only from the gateway and only when newer.

mod support;

use chitti_common::protocol::{Ack, FindingBatch, Topic, TopicKind};
use chitti_common::signing::{open_ack, sign_batch, signing_key_from_seed};
use chitti_hub::ingest::{
    AckError, AckPublisher, InboundMessage, Ingest, IngestMetrics, IngestSettings,
};
use chitti_hub::store::prelude::*;
use ed25519_dalek::SigningKey;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{enrol, finding, TestDb};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Records the acks the hub publishes.
#[derive(Default)]
struct Acks(Mutex<Vec<(String, Ack)>>);

impl AckPublisher for Acks {
    fn publish(
        &self,
        topic: String,
        payload: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<(), AckError>> + Send + '_>> {
        Box::pin(async move {
            // Every ack is signed by the hub's key for its own topic.
            let ack: Ack = open_ack(&topic, &payload, &[hub_key().verifying_key()])
                .map_err(|e| e.to_string())?;
            self.0.lock().unwrap().push((topic, ack));
            Ok(())
        })
    }
}

/// The key the ingest stage under test signs its acks with.
fn hub_key() -> SigningKey {
    signing_key_from_seed(&[99; 32])
}

fn key(n: u8) -> SigningKey {
    signing_key_from_seed(&[n; 32])
}

fn batch(site: &str, gateway: &str, n: usize) -> FindingBatch {
    let track = Uuid::now_v7();
    FindingBatch {
        batch_id: Uuid::now_v7(),
        sent_at: chrono::Utc::now(),
        findings: (0..n)
            .map(|i| {
                let mut f = finding(track, 2, 60.0 + i as f64, i as i64);
                f.site = site.into();
                f.gateway = gateway.into();
                f
            })
            .collect(),
    }
}

fn topic(site: &str, gateway: &str) -> String {
    Topic::new(site, gateway, TopicKind::Findings)
        .unwrap()
        .to_string()
}

fn message(
    topic: String,
    payload: Vec<u8>,
    settled: &tokio::sync::watch::Sender<usize>,
) -> InboundMessage {
    let settled = settled.clone();
    InboundMessage {
        topic,
        payload: payload.into(),
        settle: Some(Box::new(move || settled.send_modify(|n| *n += 1))),
    }
}

struct Harness {
    tx: mpsc::Sender<InboundMessage>,
    acks: Arc<Acks>,
    metrics: Arc<IngestMetrics>,
    settled: tokio::sync::watch::Sender<usize>,
}

fn start<S: Store + 'static>(store: Arc<S>) -> Harness {
    let acks = Arc::new(Acks::default());
    let metrics = Arc::new(IngestMetrics::default());
    let ingest = Ingest::new(
        store,
        acks.clone(),
        Arc::new(hub_key()),
        IngestSettings {
            require_signatures: true,
            commit_max_findings: 5000,
            commit_max_wait: Duration::from_millis(5),
            max_payload_bytes: 256 << 10,
        },
        metrics.clone(),
    );
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(ingest.run(rx));
    Harness {
        tx,
        acks,
        metrics,
        settled: tokio::sync::watch::channel(0).0,
    }
}

impl Harness {
    async fn send(&self, topic: String, payload: Vec<u8>) {
        self.tx
            .send(message(topic, payload, &self.settled))
            .await
            .unwrap();
    }

    /// Waits until `n` messages were settled (fully handled).
    async fn settled(&self, n: usize) {
        let mut rx = self.settled.subscribe();
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|&count| count >= n))
            .await
            .expect("messages settled")
            .unwrap();
    }
}

async fn signed_batches_are_stored_once_and_acked_after_commit(backend: &str) {
    let db = TestDb::migrated(backend).await;
    let store = Arc::new(db.store.clone());
    let k = key(1);
    enrol(
        store.as_ref(),
        "north-yard",
        "gw-07",
        k.verifying_key().to_bytes(),
    )
    .await;
    let h = start(store.clone());
    let t = topic("north-yard", "gw-07");
    let b = batch("north-yard", "gw-07", 3);
    let payload = sign_batch(&t, &b, &k).unwrap();
    h.send(t.clone(), payload.clone()).await;
    h.send(t.clone(), payload).await; // a resend after a lost ack
    h.settled(2).await;
    assert_eq!(store.count_findings().await.unwrap(), 3);
    let acks = h.acks.0.lock().unwrap().clone();
    let ids: Vec<Uuid> = b.findings.iter().map(|f| f.id).collect();
    assert_eq!(acks.len(), 2, "acked twice");
    for (topic, ack) in &acks {
        assert_eq!(topic, "chitti/v1/north-yard/gw-07/ack");
        assert_eq!(ack.ids, ids);
        assert_eq!(ack.batch_id, b.batch_id, "the ack answers its batch");
    }
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(h.metrics.findings_inserted.load(Relaxed), 3);
    assert_eq!(h.metrics.findings_duplicate.load(Relaxed), 3);
    let page = store.list_alerts(&Default::default()).await.unwrap();
    assert_eq!(page.items.len(), 1, "one track, one alert");
}

async fn bad_input_is_dead_lettered_and_ingest_carries_on(backend: &str) {
    let db = TestDb::migrated(backend).await;
    let store = Arc::new(db.store.clone());
    let (a, b) = (key(1), key(2));
    enrol(
        store.as_ref(),
        "north-yard",
        "gw-a",
        a.verifying_key().to_bytes(),
    )
    .await;
    enrol(
        store.as_ref(),
        "north-yard",
        "gw-b",
        b.verifying_key().to_bytes(),
    )
    .await;
    let h = start(store.clone());
    let ta = topic("north-yard", "gw-a");
    let tb = topic("north-yard", "gw-b");
    // Gateway A publishes as gateway B: signed with A's key on B's topic.
    h.send(
        tb.clone(),
        sign_batch(&tb, &batch("north-yard", "gw-b", 2), &a).unwrap(),
    )
    .await;
    // A signs correctly but its findings claim to be B's.
    h.send(
        ta.clone(),
        sign_batch(&ta, &batch("north-yard", "gw-b", 1), &a).unwrap(),
    )
    .await;
    // A replays B's genuine batch on its own topic.
    h.send(
        ta.clone(),
        sign_batch(&tb, &batch("north-yard", "gw-b", 1), &b).unwrap(),
    )
    .await;
    h.send(ta.clone(), b"{not json".to_vec()).await;
    h.send(
        ta.clone(),
        serde_json::to_vec(&batch("north-yard", "gw-a", 1)).unwrap(),
    )
    .await; // unsigned
    h.send(ta.clone(), vec![b'x'; 300 << 10]).await; // oversize
    let unknown = topic("north-yard", "gw-nobody");
    h.send(
        unknown.clone(),
        sign_batch(&unknown, &batch("north-yard", "gw-nobody", 1), &a).unwrap(),
    )
    .await;
    h.send("chitti/v2/x/y/findings".into(), b"{}".to_vec())
        .await;
    let mut invalid = batch("north-yard", "gw-a", 1);
    invalid.findings[0].hotspot.max_c = 1e9;
    h.send(ta.clone(), sign_batch(&ta, &invalid, &a).unwrap())
        .await;
    h.send(
        "chitti/v1/north-yard/gw-a/status".into(),
        b"\xff\xfe".to_vec(),
    )
    .await;
    // And one good batch at the end: ingest is still alive.
    let good = batch("north-yard", "gw-a", 2);
    h.send(ta.clone(), sign_batch(&ta, &good, &a).unwrap())
        .await;
    h.settled(11).await;
    assert_eq!(
        store.count_findings().await.unwrap(),
        2,
        "only the good batch is stored"
    );
    let stored: Vec<Uuid> = good.findings.iter().map(|f| f.id).collect();
    for id in &stored {
        assert!(store.finding(*id).await.unwrap().is_some());
    }
    let acks = h.acks.0.lock().unwrap().clone();
    assert_eq!(acks.len(), 1, "dead letters are not acknowledged: {acks:?}");
    assert_eq!(acks[0].1.ids, stored);
    assert_eq!(store.dead_letter_count().await.unwrap(), 10);
    let letters = store.list_dead_letters(100).await.unwrap();
    let reasons: Vec<String> = letters.iter().map(|l| l.letter.reason.clone()).collect();
    for expected in [
        "signature: ",
        "identity: finding",
        "malformed: ",
        "oversize: payload of 307200 bytes",
        "unknown-gateway: gateway north-yard/gw-nobody is not enrolled",
        "topic: ",
        "invalid: finding 0",
        "status: ",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(expected)),
            "{expected} missing in {reasons:#?}"
        );
    }
    assert!(
        letters.iter().any(|l| l.letter.payload == b"{not json"),
        "raw payload kept"
    );
    // Revoked: its batches stop being accepted.
    assert!(store.revoke_gateway("north-yard", "gw-b").await.unwrap());
}

async fn a_revoked_gateway_is_refused_once_the_cache_expires_or_at_once_when_new(backend: &str) {
    let db = TestDb::migrated(backend).await;
    let store = Arc::new(db.store.clone());
    let k = key(5);
    enrol(
        store.as_ref(),
        "north-yard",
        "gw-r",
        k.verifying_key().to_bytes(),
    )
    .await;
    store.revoke_gateway("north-yard", "gw-r").await.unwrap();
    let h = start(store.clone());
    let t = topic("north-yard", "gw-r");
    h.send(
        t.clone(),
        sign_batch(&t, &batch("north-yard", "gw-r", 1), &k).unwrap(),
    )
    .await;
    h.settled(1).await;
    assert_eq!(store.count_findings().await.unwrap(), 0);
    let letters = store.list_dead_letters(10).await.unwrap();
    assert!(
        letters[0].letter.reason.starts_with("revoked: "),
        "{:?}",
        letters[0].letter.reason
    );
}

/// `/config/state`: kept when signed by its own gateway and newer; a replay of an older
/// report changes nothing; unsigned, forged (another gateway's key) and malformed ones
/// are dead letters; ingest carries on.
async fn configuration_states_are_believed_only_from_their_gateway(backend: &str) {
    use chitti_common::protocol::{ConfigState, ConfigStatus};
    use chitti_common::signing::{sign_report, ReportKind};
    let db = TestDb::migrated(backend).await;
    let store = Arc::new(db.store.clone());
    let (a, b) = (key(1), key(2));
    enrol(
        store.as_ref(),
        "north-yard",
        "gw-a",
        a.verifying_key().to_bytes(),
    )
    .await;
    enrol(
        store.as_ref(),
        "north-yard",
        "gw-b",
        b.verifying_key().to_bytes(),
    )
    .await;
    let h = start(store.clone());
    let t = Topic::new("north-yard", "gw-a", TopicKind::ConfigState)
        .unwrap()
        .to_string();
    let at =
        chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).unwrap();
    let state = |version: u64, status: ConfigStatus, ts| ConfigState {
        version,
        status,
        errors: match status {
            ConfigStatus::Applied => Vec::new(),
            _ => vec!["camera[0].source.path: /srv/drops is not a folder".into()],
        },
        applied_version: Some(1),
        applied_at: Some(at),
        config: Some("version = 1\n".into()),
        ts,
    };
    let newer = state(2, ConfigStatus::Rejected, at + chrono::Duration::seconds(5));
    let older = state(1, ConfigStatus::Applied, at);
    let sign =
        |s: &ConfigState, k: &SigningKey| sign_report(ReportKind::ConfigState, &t, s, k).unwrap();
    h.send(t.clone(), sign(&newer, &a)).await;
    h.send(t.clone(), sign(&older, &a)).await; // a replay of an older report
    h.send(t.clone(), serde_json::to_vec(&older).unwrap()).await; // unsigned
    h.send(
        t.clone(),
        sign(
            &state(3, ConfigStatus::Applied, at + chrono::Duration::seconds(9)),
            &b,
        ),
    )
    .await; // gateway B's key on A's topic
    h.send(t.clone(), b"{not json".to_vec()).await;
    h.settled(5).await;
    let kept = store
        .reported_config("north-yard", "gw-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.state, newer);
    assert_eq!(store.dead_letter_count().await.unwrap(), 3);
    let reasons: Vec<String> = store
        .list_dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.letter.reason)
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.starts_with("config-state: not a signed config-state"))
            .count(),
        2,
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("signature: ")),
        "{reasons:#?}"
    );
}

/// Replicas take one gateway's reports in parallel, so a status can arrive after a newer
/// one: within `REORDER_WINDOW` it is superseded (acknowledged, counted, not applied),
/// older than that it is a dead letter (a replay, a clock gone back). Telemetry keeps
/// the strict rule: any sample not newer than the newest is a dead letter.
async fn reports_overtaken_by_a_newer_one_are_superseded_older_ones_dead_lettered(backend: &str) {
    use chitti_common::protocol::{AgentStatus, Telemetry};
    use chitti_common::signing::{sign_report, ReportKind};
    let db = TestDb::migrated(backend).await;
    let store = Arc::new(db.store.clone());
    let gw = key(1);
    enrol(
        store.as_ref(),
        "north-yard",
        "gw-a",
        gw.verifying_key().to_bytes(),
    )
    .await;
    let h = start(store.clone());
    let now =
        chrono::DateTime::from_timestamp_micros(chrono::Utc::now().timestamp_micros()).unwrap();
    let session = now - chrono::Duration::minutes(30);
    let status = |ts| AgentStatus {
        online: true,
        agent_version: "test".into(),
        cameras: Vec::new(),
        buffer: None,
        model: None,
        detector: None,
        config_version: None,
        model_update: None,
        evidence: None,
        ts,
        session: Some(session),
    };
    let sample = |ts| Telemetry {
        ts,
        cpu_temp_c: Some(50.0),
        gpu_temp_c: None,
        disk_free_bytes: None,
        analysis_latency_ms: None,
        frame_drops: 0,
        outbox_depth: None,
        outbox_oldest_age_s: None,
        cameras: Vec::new(),
    };
    let status_topic = Topic::new("north-yard", "gw-a", TopicKind::Status)
        .unwrap()
        .to_string();
    let telemetry_topic = Topic::new("north-yard", "gw-a", TopicKind::Telemetry)
        .unwrap()
        .to_string();
    let ages = [0, 10, 600]; // seconds before now: newest, overtaken, replayed
    for age in ages {
        let ts = now - chrono::Duration::seconds(age);
        let signed = sign_report(ReportKind::Status, &status_topic, &status(ts), &gw).unwrap();
        h.send(status_topic.clone(), signed).await;
    }
    for age in ages {
        let ts = now - chrono::Duration::seconds(age);
        let signed =
            sign_report(ReportKind::Telemetry, &telemetry_topic, &sample(ts), &gw).unwrap();
        h.send(telemetry_topic.clone(), signed).await;
    }
    // Dead letters other than findings are settled too: all six.
    h.settled(6).await;
    let counted = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(counted(&h.metrics.statuses), 1);
    assert_eq!(counted(&h.metrics.telemetry), 1);
    assert_eq!(
        counted(&h.metrics.reports_superseded),
        1,
        "the status 10 s older"
    );
    let letters = store.list_dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 3, "{letters:#?}");
    for l in &letters {
        assert!(
            l.letter.reason.starts_with("stale: "),
            "{}",
            l.letter.reason
        );
    }
}

support::on_both!(
    reports_overtaken_by_a_newer_one_are_superseded_older_ones_dead_lettered,
    configuration_states_are_believed_only_from_their_gateway,
    signed_batches_are_stored_once_and_acked_after_commit,
    bad_input_is_dead_lettered_and_ingest_carries_on,
    a_revoked_gateway_is_refused_once_the_cache_expires_or_at_once_when_new
);
