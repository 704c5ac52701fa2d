//! The API's live stream end to end: an alert raised by ingest — an agent's findings
//! over the embedded MQTT broker into SQLite — reaches a client of
//! `GET /api/v1/stream`, and a client resuming with `Last-Event-ID` gets what it
//! missed.

use chitti_e2e::*;
use std::sync::mpsc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_raised_by_ingest_over_mqtt_reaches_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    let out = dir.path().join("gw1").display().to_string();
    hub_command(&[
        "gateway",
        "add",
        "--data",
        &data_s,
        "--site",
        "north-yard",
        "--gateway",
        "gw-1",
        "--out",
        &out,
    ]);
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "live stream watcher\n").unwrap();
    hub_command(&[
        "user",
        "add",
        "--data",
        &data_s,
        "--username",
        "vera",
        "--role",
        "viewer",
        "--password-file",
        &password_file.display().to_string(),
    ]);
    let (hub, addrs) = start_hub(
        &[
            "--data",
            &data_s,
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
        &dir.path().join("hub.log"),
    );
    let token = api_login(addrs.http, "vera", "live stream watcher");
    // Subscribed before the agent starts: every event comes live.
    let all = subscribe(addrs.http, &token, "", None);
    // A filter on another site sees gateway events of that site only: none here.
    let other_site = subscribe(addrs.http, &token, "?site=south-yard", None);

    let text = simulated_agent_config(
        "north-yard",
        "gw-1",
        &format!("mqtt://{}", addrs.mqtt.unwrap()),
        &dir.path().join("gw1"),
        &dir.path().join("outbox"),
        60,
    );
    let expected = predicted_shapes(&text);
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let log = || format!("{}\nagent log:\n{}", hub.log_text(), agent.log_text());

    // Events until the alert holds every finding and the gateway has reported.
    let worst = expected.iter().map(|s| s.3).max().unwrap();
    let mut seen: Vec<SseEvent> = Vec::new();
    loop {
        let e = match all.recv_timeout(Duration::from_secs(60)) {
            Ok(e) => e,
            Err(e) => panic!(
                "stream ended early ({e}); saw {seen:?}; hub log:\n{}",
                log()
            ),
        };
        seen.push(e);
        let alerts: Vec<&SseEvent> = seen.iter().filter(|e| e.event == "alert").collect();
        let complete = alerts
            .last()
            .is_some_and(|a| a.data["finding_count"].as_u64() == Some(expected.len() as u64));
        if complete && seen.iter().any(|e| e.event == "gateway") {
            break;
        }
    }
    let alerts: Vec<&SseEvent> = seen.iter().filter(|e| e.event == "alert").collect();
    let first = alerts[0].clone();
    assert_eq!(first.data["site"], "north-yard");
    assert_eq!(first.data["gateway"], "gw-1");
    assert_eq!(first.data["status"], "open");
    assert!(
        alerts.iter().all(|a| a.data["id"] == first.data["id"]),
        "one track, one alert"
    );
    assert_eq!(
        alerts.last().unwrap().data["worst_level"].as_u64(),
        Some(u64::from(worst))
    );
    let gateway = seen.iter().find(|e| e.event == "gateway").unwrap();
    assert_eq!(gateway.data["gateway"], "gw-1");
    assert!(
        seen.iter().all(|e| e.event != "resync"),
        "nothing was lost: {seen:?}"
    );
    // Ids increase in the order events arrive.
    let seq = |id: &str| id.rsplit('-').next().unwrap().parse::<u64>().unwrap();
    let seqs: Vec<u64> = seen.iter().map(|e| seq(e.id.as_deref().unwrap())).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let first_id = seen[0].id.clone().expect("events carry ids");

    // Resuming after the first event replays the rest, starting right after it.
    let resumed = subscribe(addrs.http, &token, "?site=north-yard", Some(&first_id));
    let replay = resumed
        .recv_timeout(Duration::from_secs(60))
        .expect("a replay");
    assert_eq!(replay.id, seen[1].id, "the replay starts right after");
    // An id from another hub start is answered with a resync.
    let stale = subscribe(addrs.http, &token, "", Some("000000000000-1"));
    assert_eq!(
        stale.recv_timeout(Duration::from_secs(60)).unwrap().event,
        "resync"
    );

    // Nothing of north-yard reached the south-yard subscriber (it gets no events here).
    assert!(matches!(
        other_site.try_recv(),
        Err(mpsc::TryRecvError::Empty)
    ));
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}
