//! Two `chitti-hub serve` processes as replicas of one hub: one Postgres database, one
//! Mosquitto whose shared subscription (`$share/chitti-hub/…`) splits the gateways'
//! batches between them, one signing key (the shared data directory).
//!
//! - **Replicas behave as one**: a live-stream client of either replica sees every
//!   change to the alert, whichever replica ingested the batch that made it (the
//!   relay, `hub/src/live_relay.rs`), and a session signed in on one works on both.
//! - **Notifications once per alert, whichever replica sends**: both replicas run the
//!   notifier on one outbox (claims with `SKIP LOCKED`); every message reaches the
//!   receivers, and PagerDuty gets exactly one incident key per alert.
//! - **A replica killed with `kill -9` mid-stream loses nothing**: every finding the
//!   agents made is stored exactly once (what the dead replica held unacknowledged is
//!   resent by the agent and taken by the survivor), and the survivor's clients go on
//!   seeing the alert change to its final state.

use chitti_e2e::*;
use chitti_hub::store::prelude::*;
use chitti_hub::store::AnyStore;
use chitti_test_support::HttpReceiver;
use std::sync::mpsc::Receiver;

/// Events from `stream` until an alert event satisfies `done`; panics after
/// [`HANG_GUARD`].
fn until_alert(
    stream: &Receiver<SseEvent>,
    done: impl Fn(&serde_json::Value) -> bool,
    log: impl Fn() -> String,
) -> Vec<SseEvent> {
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + HANG_GUARD;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match stream.recv_timeout(left) {
            Ok(e) => {
                let finished = e.event == "alert" && done(&e.data);
                seen.push(e);
                if finished {
                    return seen;
                }
            }
            Err(e) => panic!("stream ended ({e}) after {seen:?}\n{}", log()),
        }
    }
}

/// `chitti_hub_findings_inserted_total` on a replica's `/metrics`.
fn inserted(http: std::net::SocketAddr) -> u64 {
    metric(http, "chitti_hub_findings_inserted_total") as u64
}

/// An agent for `gateway` on `broker`, its findings predicted; `paced`: frames at
/// their own pace (still streaming seconds later), else as fast as taken.
fn agent(
    dir: &std::path::Path,
    gateway: &str,
    broker: &str,
    frames: u64,
    paced: bool,
) -> (Process, u64) {
    let mut text = simulated_agent_config(
        "north-yard",
        gateway,
        broker,
        &dir.join(gateway),
        &dir.join(format!("{gateway}-outbox")),
        frames,
    );
    if paced {
        text = text
            .replace("fps = 1.0\nspeed = 20.0", "fps = 20.0\nspeed = 400.0")
            .replace("unpaced = true", "unpaced = false");
    }
    let expected = predicted_shapes(&text).len() as u64;
    let config = dir.join(format!("{gateway}.toml"));
    std::fs::write(&config, &text).unwrap();
    (
        start_agent(&config, &dir.join(format!("{gateway}.log"))),
        expected,
    )
}

/// The alert's final state (all `expected` findings) on `gateway`.
fn complete(gateway: &'static str, expected: u64) -> impl Fn(&serde_json::Value) -> bool {
    move |alert| alert["gateway"] == gateway && alert["finding_count"].as_u64() == Some(expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_stream_every_change_and_a_killed_one_loses_no_finding() {
    let dir = tempfile::tempdir().unwrap();
    let db = ScratchPostgres::create("chitti_e2e").await;
    let broker = Mosquitto::start(dir.path(), "allow_anonymous true");
    let config = external_hub_config(dir.path(), &db.url, &broker.url(), None);
    // Both replicas notify a webhook and PagerDuty (a real HTTP receiver).
    let secret = hub_command(&["notify", "new-secret"]).trim().to_string();
    let receiver = HttpReceiver::start("webhook", std::sync::Arc::new(|_, _| true)).await;
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&webhook_and_pagerduty(
        &receiver.url("webhook"),
        &receiver.url("pagerduty"),
        &secret,
        100,
        3,
    ));
    std::fs::write(&config, text).unwrap();
    let config_s = config.display().to_string();
    for gw in ["gw-1", "gw-2"] {
        enrol(
            &["--config", &config_s],
            "north-yard",
            gw,
            &dir.path().join(gw),
        );
    }
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "replica watcher\n").unwrap();
    hub_command(&[
        "user",
        "add",
        "--config",
        &config_s,
        "--username",
        "vera",
        "--role",
        "viewer",
        "--password-file",
        &password_file.display().to_string(),
    ]);
    // One file each: two replicas on one host need their own MQTT client ids (the
    // default is the host name's).
    let replica = |name: &str| {
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "group = \"chitti-hub\"\n",
            &format!("group = \"chitti-hub\"\nclient_id = \"chitti-hub-{name}\"\n"),
        );
        assert!(text.contains("client_id"), "{text}");
        let path = dir.path().join(format!("hub-{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let path = path.display().to_string();
        start_hub(
            &["--config", &path],
            &dir.path().join(format!("hub-{name}.log")),
        )
    };
    let (hub_a, a) = replica("a");
    let (hub_b, b) = replica("b");
    // Signed in on A, used on B: sessions live in the shared database.
    let token = api_login(a.http, "vera", "replica watcher");
    let stream_a = subscribe(a.http, &token, "", None);
    let stream_b = subscribe(b.http, &token, "", None);

    // gw-1 streams while both replicas run: the broker splits its batches between
    // them, and each replica's client still sees the alert reach its final state —
    // the replica that did not commit the last batch only through the relay.
    let (agent_1, expected_1) = agent(dir.path(), "gw-1", &broker.url(), 60, false);
    let log = || {
        format!(
            "hub A:\n{}\nhub B:\n{}\ngw-1:\n{}",
            hub_a.log_text(),
            hub_b.log_text(),
            agent_1.log_text()
        )
    };
    let seen_a = until_alert(&stream_a, complete("gw-1", expected_1), log);
    let seen_b = until_alert(&stream_b, complete("gw-1", expected_1), log);
    let (by_a, by_b) = (inserted(a.http), inserted(b.http));
    eprintln!(
        "gw-1: A inserted {by_a}, B {by_b} of {expected_1}; A saw {} events, B {}",
        seen_a.len(),
        seen_b.len()
    );
    assert!(
        by_a > 0 && by_b > 0,
        "the broker split the work: A {by_a}, B {by_b}"
    );
    assert_eq!(by_a + by_b, expected_1, "each finding inserted once");
    for seen in [&seen_a, &seen_b] {
        assert!(seen.iter().all(|e| e.event != "resync"), "{seen:?}");
    }

    // gw-2 streams at its own pace (frames may drop: its findings are read from its
    // log, not predicted); A is killed at its first gw-2 alert, B finishes the work.
    let (agent_2, _) = agent(dir.path(), "gw-2", &broker.url(), 200, true);
    let before_kill = until_alert(&stream_b, |alert| alert["gateway"] == "gw-2", log);
    hub_a.kill9();
    let store = AnyStore::connect(&db.url).await.unwrap();
    let log_2 = || {
        format!(
            "B inserted {}; gw-1 made {}, gw-2 made {}\nhub B:\n{}\ngw-2:\n{}",
            inserted(b.http),
            logged_finding_ids(&agent_1.log_text()).len(),
            logged_finding_ids(&agent_2.log_text()).len(),
            hub_b.log_text(),
            agent_2.log_text()
        )
    };
    eventually(
        "gw-2's camera finished and all it made stored",
        log_2,
        || async {
            let cameras = store.list_cameras("north-yard", "gw-2").await.ok()?;
            let finished = cameras.iter().any(|c| c.state == "finished");
            let made = logged_finding_ids(&agent_1.log_text()).len()
                + logged_finding_ids(&agent_2.log_text()).len();
            (finished && store.count_findings().await.ok()? as usize >= made).then_some(())
        },
    )
    .await;
    // B's client sees gw-2's alert reach what the store holds, with nothing lost.
    let alerts = api_get(b.http, &token, "/api/v1/alerts?gateway=gw-2");
    let want: std::collections::BTreeMap<String, u64> = alerts["items"]
        .as_array()
        .expect("alert list")
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                a["finding_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(!want.is_empty(), "gw-2 raised an alert");
    let mut seen = std::collections::BTreeMap::new();
    let mut after_kill = Vec::new();
    let deadline = std::time::Instant::now() + HANG_GUARD;
    let events = before_kill
        .into_iter()
        .map(Ok)
        .chain(std::iter::from_fn(|| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            Some(stream_b.recv_timeout(left))
        }));
    for e in events {
        let e = e.unwrap_or_else(|e| {
            panic!("B's stream ({e}): saw {seen:?}, want {want:?}\n{}", log_2())
        });
        if e.event == "alert" && e.data["gateway"] == "gw-2" {
            seen.insert(
                e.data["id"].as_str().unwrap().to_owned(),
                e.data["finding_count"].as_u64().unwrap(),
            );
        }
        after_kill.push(e);
        if seen == want {
            break;
        }
    }
    assert!(
        after_kill.iter().all(|e| e.event != "resync"),
        "B lost no change: {after_kill:?}"
    );

    // Every finding both agents made, exactly once.
    let mut made = logged_finding_ids(&agent_1.log_text());
    made.extend(logged_finding_ids(&agent_2.log_text()));
    let stored = all_stored_findings(&store).await;
    let stored_ids: std::collections::BTreeSet<uuid::Uuid> =
        stored.iter().map(|f| f.finding.id).collect();
    assert_eq!(stored.len(), stored_ids.len(), "no finding twice");
    assert_eq!(stored_ids, made, "every finding the agents made is stored");

    // Every notification sent and received; one PagerDuty incident per alert.
    let alerts = store.list_alerts(&Default::default()).await.unwrap().items;
    assert_notified_once(&store, &receiver, &alerts, log_2).await;
    store.close().await;
    assert!(agent_1.terminate().success());
    assert!(agent_2.terminate().success());
    assert!(hub_b.terminate().success());
}
