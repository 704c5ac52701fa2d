//! Security regressions, as an attacker would try them against real processes.
//!
//! - **A forged acknowledgement destroys nothing**, even through a broker that enforces
//!   no permissions (a Mosquitto without ACLs). Gateway A publishes acks on gateway B's
//!   `/ack` topic while the hub's database is down: the old unsigned form, one signed
//!   with A's own key, and one that copies a batch id A watched B send. B's agent
//!   refuses all three and deletes nothing; when the database is back, every finding B
//!   made is in it.
//! - **No gateway speaks for another**, through the same open broker: A's unsigned,
//!   self-signed and replayed statuses and telemetry on B's topics are dead letters and
//!   B's record does not move; B's own fresh status still is applied.
//! - **The brokers confine each gateway**: on the embedded broker (its authorisation
//!   front) and on a Mosquitto with the shipped `deploy/brokers/mosquitto` ACL, A cannot
//!   subscribe to B's traffic, publish on B's topics or take B's client id, while B's
//!   findings still travel end to end.

use chitti_e2e::*;
use chitti_hub::store::prelude::*;
use chitti_hub::store::AnyStore;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::time::Duration;

/// Gateway A, logged in to the hub's broker with its own credentials.
struct Attacker {
    client: AsyncClient,
    /// Finding batches A sees on B's topic (a broker without ACLs lets it subscribe).
    seen: tokio::sync::mpsc::Receiver<Vec<u8>>,
}

async fn attacker(mqtt: std::net::SocketAddr, username: &str, password: &str) -> Attacker {
    let mut options = MqttOptions::new("attacker-a", mqtt.ip().to_string(), mqtt.port());
    options.set_credentials(username, password);
    options.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let (tx, seen) = tokio::sync::mpsc::channel(256);
    let (subscribed_tx, mut subscribed) = tokio::sync::mpsc::channel(1);
    let sub = client.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = sub
                        .subscribe("chitti/v1/north-yard/gw-b/findings", QoS::AtLeastOnce)
                        .await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.try_send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.try_send(p.payload.to_vec());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(HANG_GUARD, subscribed.recv())
        .await
        .expect("the attacker is subscribed");
    Attacker { client, seen }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_acks_during_a_database_outage_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = ScratchPostgres::create("chitti_e2e").await;
    let proxy = CuttableProxy::start(5432).await;
    // A broker that lets any client publish anywhere (no ACLs): the signatures alone
    // must hold.
    let broker = Mosquitto::start(dir.path(), "allow_anonymous true");
    let config = external_hub_config(dir.path(), &db.url_via(proxy.port), &broker.url(), None);
    let config_s = config.display().to_string();
    let (creds_a, creds_b) = (dir.path().join("gw-a"), dir.path().join("gw-b"));
    enrol(&["--config", &config_s], "north-yard", "gw-a", &creds_a);
    enrol(&["--config", &config_s], "north-yard", "gw-b", &creds_b);
    let (hub, _) = start_hub(&["--config", &config_s], &dir.path().join("hub.log"));
    let mqtt: std::net::SocketAddr = ([127, 0, 0, 1], broker.port).into();
    let mut a = attacker(
        mqtt,
        "north-yard/gw-a",
        std::fs::read_to_string(creds_a.join("mqtt-password"))
            .unwrap()
            .trim(),
    )
    .await;
    let a_key = chitti_agent::config::read_signing_key(&creds_a.join("signing.key")).unwrap();

    // B streams (paced: still running when the database goes away).
    let text = simulated_agent_config(
        "north-yard",
        "gw-b",
        &format!("mqtt://{mqtt}"),
        &creds_b,
        &dir.path().join("outbox"),
        60,
    );
    let text = paced(text, 200);
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let agent = start_agent(
        &dir.path().join("agent.toml"),
        &dir.path().join("agent.log"),
    );
    let context = || {
        format!(
            "hub log:\n{}\nagent log:\n{}",
            hub.log_text(),
            agent.log_text()
        )
    };
    let store = AnyStore::connect(&db.url).await.unwrap();
    eventually("B's first findings stored", context, || async {
        (store.count_findings().await.ok()? >= 2).then_some(())
    })
    .await;
    proxy.cut();
    eventually("the hub failing to commit", context, || async {
        hub.log_text().contains("not acknowledging").then_some(())
    })
    .await;
    // A watches B's batches go by; from now on none is acknowledged.
    while a.seen.try_recv().is_ok() {}
    let batch_payload = tokio::time::timeout(HANG_GUARD, a.seen.recv())
        .await
        .expect("a batch of B's")
        .unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(&batch_payload).unwrap();
    let batch: chitti_common::protocol::FindingBatch =
        serde_json::from_str(envelope["batch"].to_string().as_str()).unwrap();
    let made = logged_finding_ids(&agent.log_text());

    // Three forgeries on B's ack topic.
    let ack_topic = "chitti/v1/north-yard/gw-b/ack";
    let all: Vec<uuid::Uuid> = made.iter().copied().collect();
    let unsigned = serde_json::json!({ "ids": all }).to_string().into_bytes();
    let own_key = chitti_common::signing::sign_ack(
        ack_topic,
        &chitti_common::protocol::Ack {
            batch_id: uuid::Uuid::now_v7(),
            ids: all.clone(),
            signed_at: chrono::Utc::now(),
        },
        &a_key,
    )
    .unwrap();
    let copied_batch = chitti_common::signing::sign_ack(
        ack_topic,
        &chitti_common::protocol::Ack {
            batch_id: batch.batch_id,
            ids: batch.findings.iter().map(|f| f.id).collect(),
            signed_at: chrono::Utc::now(),
        },
        &a_key,
    )
    .unwrap();
    for forged in [unsigned, own_key, copied_batch] {
        a.client
            .publish(ack_topic, QoS::AtLeastOnce, false, forged)
            .await
            .unwrap();
    }
    eventually("B refusing the three forged acks", context, || async {
        let refused = agent.log_text().matches("/ack refused").count();
        (refused >= 3).then_some(())
    })
    .await;
    // (A genuine ack of a batch committed just before the outage may still arrive
    // meanwhile: what counts is below, that nothing B made is missing at the end.)

    // The database is back: every finding B made lands, none was lost.
    proxy.restore();
    eventually(
        "the camera finished and every finding it made in the database",
        context,
        || async {
            let cameras = store.list_cameras("north-yard", "gw-b").await.ok()?;
            let finished = cameras.iter().any(|c| c.state == "finished");
            let want = logged_finding_ids(&agent.log_text());
            (finished && want.is_subset(&stored_finding_ids(&store).await)).then_some(())
        },
    )
    .await;
    let want = logged_finding_ids(&agent.log_text());
    assert_eq!(
        stored_finding_ids(&store).await,
        want,
        "every finding B made, none lost"
    );
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}

/// A user name that tries to plant a log line: a newline, a forged "signed in" record
/// and ANSI colour codes. The hub's log shows it escaped on the refusal's own line.
#[test]
fn a_user_name_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let (hub, addrs) = start_hub(
        &[
            "--data",
            &data,
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
        &dir.path().join("hub.log"),
    );
    let forged = "mallory\n2026-12-06T00:00:00Z  INFO signed in username=admin\u{1b}[31m";
    let answer = ureq::post(format!("http://{}/api/v1/auth/login", addrs.http))
        .header("content-type", "application/json")
        .send(serde_json::json!({ "username": forged, "password": "x" }).to_string());
    assert!(
        matches!(answer, Err(ureq::Error::StatusCode(401))),
        "{answer:?}"
    );
    let log = hub.log_text();
    assert!(log.contains("sign-in refused"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.trim_start().starts_with("2026-12-06T00:00:00Z")),
        "a forged line in the log:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "raw escape codes in the log:\n{log}"
    );
    assert!(log.contains(r"mallory\n2026-12-06"), "{log}");
}

/// A test-side MQTT client: connected, its incoming publishes on a channel; the
/// channel closes when the broker drops the connection (no reconnect).
async fn mqtt_client(
    port: u16,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> (
    AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    options.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    loop {
        match tokio::time::timeout(HANG_GUARD, eventloop.poll())
            .await
            .expect("connect in time")
        {
            Ok(Event::Incoming(Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("{client_id} cannot connect: {e}"),
        }
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                let _ = tx.send(p);
            }
        }
    });
    (client, rx)
}

fn status(
    agent_version: &str,
    online: bool,
    ts: chrono::DateTime<chrono::Utc>,
    session: chrono::DateTime<chrono::Utc>,
) -> chitti_common::protocol::AgentStatus {
    chitti_common::protocol::AgentStatus {
        online,
        agent_version: agent_version.into(),
        cameras: Vec::new(),
        buffer: None,
        model: None,
        detector: Some("disabled".into()),
        config_version: None,
        model_update: None,
        evidence: None,
        ts,
        session: Some(session),
    }
}

fn telemetry(ts: chrono::DateTime<chrono::Utc>, cpu: f64) -> chitti_common::protocol::Telemetry {
    chitti_common::protocol::Telemetry {
        ts,
        cpu_temp_c: Some(cpu),
        gpu_temp_c: None,
        disk_free_bytes: Some(1 << 30),
        analysis_latency_ms: None,
        frame_drops: 0,
        outbox_depth: None,
        outbox_oldest_age_s: None,
        cameras: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gateway_speaks_for_another_through_an_open_broker() {
    use chitti_common::signing::{sign_report, ReportKind};
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), "allow_anonymous true");
    let store_url = sqlite_url(&dir.path().join("data"));
    let config = external_hub_config(dir.path(), &store_url, &broker.url(), None);
    let config_s = config.display().to_string();
    let (creds_a, creds_b) = (dir.path().join("gw-a"), dir.path().join("gw-b"));
    enrol(&["--config", &config_s], "north-yard", "gw-a", &creds_a);
    enrol(&["--config", &config_s], "north-yard", "gw-b", &creds_b);
    let (hub, _) = start_hub(&["--config", &config_s], &dir.path().join("hub.log"));
    let store = AnyStore::connect(&store_url).await.unwrap();
    let key = |creds: &std::path::Path| {
        chitti_agent::config::read_signing_key(&creds.join("signing.key")).unwrap()
    };
    let (a_key, b_key) = (key(&creds_a), key(&creds_b));
    let context = || format!("hub log:\n{}", hub.log_text());
    let (client, _) = mqtt_client(broker.port, "anyone", None).await;
    let status_topic = "chitti/v1/north-yard/gw-b/status";
    let telemetry_topic = "chitti/v1/north-yard/gw-b/telemetry";
    let send = |topic: &'static str, payload: Vec<u8>| {
        let client = client.clone();
        async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap()
        }
    };
    let gateway_b = || async {
        store
            .gateway("north-yard", "gw-b")
            .await
            .unwrap()
            .expect("gw-b enrolled")
    };

    // B's own reports (signed with B's key, as B's agent would): online, then its
    // Last Will, then one telemetry sample.
    let now = chrono::Utc::now();
    let session = now - chrono::Duration::minutes(10);
    let online = sign_report(
        ReportKind::Status,
        status_topic,
        &status(
            "9.9.9-genuine",
            true,
            session + chrono::Duration::minutes(1),
            session,
        ),
        &b_key,
    )
    .unwrap();
    send(status_topic, online.clone()).await;
    eventually("B online", context, || async {
        let g = gateway_b().await;
        (g.online && g.agent_version.as_deref() == Some("9.9.9-genuine")).then_some(())
    })
    .await;
    let will = sign_report(
        ReportKind::Status,
        status_topic,
        &status("9.9.9-genuine", false, session, session),
        &b_key,
    )
    .unwrap();
    send(status_topic, will).await;
    eventually("B's Last Will applied", context, || async {
        (!gateway_b().await.online).then_some(())
    })
    .await;
    let sample = sign_report(
        ReportKind::Telemetry,
        telemetry_topic,
        &telemetry(now, 50.0),
        &b_key,
    )
    .unwrap();
    send(telemetry_topic, sample.clone()).await;
    eventually("B's telemetry stored", context, || async {
        let minutes = store
            .telemetry(
                "north-yard",
                "gw-b",
                now - chrono::Duration::minutes(1),
                now + chrono::Duration::minutes(1),
            )
            .await
            .ok()?;
        (minutes.len() == 1).then_some(())
    })
    .await;

    // A, with nothing but its own key and the broker, tries to make the hub believe B
    // is alive: unsigned, signed with A's key, and B's recorded "online" replayed;
    // then telemetry signed by A and B's sample replayed.
    let forged = status("forged", true, chrono::Utc::now(), chrono::Utc::now());
    send(status_topic, serde_json::to_vec(&forged).unwrap()).await;
    send(
        status_topic,
        sign_report(ReportKind::Status, status_topic, &forged, &a_key).unwrap(),
    )
    .await;
    send(status_topic, online).await;
    send(
        telemetry_topic,
        sign_report(
            ReportKind::Telemetry,
            telemetry_topic,
            &telemetry(chrono::Utc::now(), 20.0),
            &a_key,
        )
        .unwrap(),
    )
    .await;
    send(telemetry_topic, sample).await;
    eventually("five dead letters", context, || async {
        (store.dead_letter_count().await.ok()? == 5).then_some(())
    })
    .await;
    let reasons: Vec<String> = store
        .list_dead_letters(10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.letter.reason)
        .collect();
    for expected in [
        "status: not a signed status (an agent older than signed reports must be upgraded)",
        "signature: key ",
        "stale: status of ",
        "stale: telemetry of ",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(expected)),
            "{expected} missing in {reasons:#?}"
        );
    }
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.starts_with("signature: key "))
            .count(),
        2,
        "{reasons:#?}"
    );
    let g = gateway_b().await;
    assert!(!g.online, "B still offline");
    assert_eq!(g.agent_version.as_deref(), Some("9.9.9-genuine"));
    let minutes = store
        .telemetry(
            "north-yard",
            "gw-b",
            now - chrono::Duration::minutes(1),
            now + chrono::Duration::minutes(1),
        )
        .await
        .unwrap();
    assert_eq!(
        minutes.iter().map(|m| m.samples).sum::<u64>(),
        1,
        "{minutes:?}"
    );

    // B itself, later: believed at once.
    let back = sign_report(
        ReportKind::Status,
        status_topic,
        &status(
            "9.9.10-genuine",
            true,
            chrono::Utc::now(),
            chrono::Utc::now(),
        ),
        &b_key,
    )
    .unwrap();
    send(status_topic, back).await;
    eventually("B back online", context, || async {
        let g = gateway_b().await;
        (g.online && g.agent_version.as_deref() == Some("9.9.10-genuine")).then_some(())
    })
    .await;
    assert!(hub.terminate().success());
}

/// Runs gateway B's real agent against `mqtt` until every finding it made is stored,
/// while the test, as gateway A (`a_login`), tries to read and write B's traffic.
/// Returns what A received and the agent (still running).
async fn b_delivers_while_a_probes(
    dir: &std::path::Path,
    broker_port: u16,
    store: &AnyStore,
    a_login: (&str, &str),
    creds_b: &std::path::Path,
    context: impl Fn() -> String,
) -> (Vec<rumqttc::Publish>, Process) {
    let text = simulated_agent_config(
        "north-yard",
        "gw-b",
        &format!("mqtt://127.0.0.1:{broker_port}"),
        creds_b,
        &dir.join("outbox-b"),
        40,
    );
    std::fs::write(dir.join("agent-b.toml"), &text).unwrap();
    let agent = start_agent(&dir.join("agent-b.toml"), &dir.join("agent-b.log"));
    let (a, mut seen) = mqtt_client(broker_port, "a-eavesdrops", Some(a_login)).await;
    for filter in [
        "#",
        "chitti/v1/north-yard/gw-b/findings",
        "chitti/v1/north-yard/gw-b/ack",
    ] {
        let _ = a.subscribe(filter, QoS::AtLeastOnce).await;
    }
    let want = predicted_shapes(&text).len();
    assert!(want >= 5);
    eventually(
        "every finding of B's stored and acknowledged",
        || format!("{}\nagent log:\n{}", context(), agent.log_text()),
        || async {
            let stored = stored_finding_ids(store).await;
            let made = logged_finding_ids(&agent.log_text());
            (made.len() >= want
                && made.is_subset(&stored)
                && agent.log_text().contains(" ack acked="))
            .then_some(())
        },
    )
    .await;
    let mut received = Vec::new();
    while let Ok(p) = seen.try_recv() {
        received.push(p);
    }
    (received, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_confines_each_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    let (creds_a, creds_b) = (dir.path().join("gw-a"), dir.path().join("gw-b"));
    enrol(&["--data", &data_s], "north-yard", "gw-a", &creds_a);
    enrol(&["--data", &data_s], "north-yard", "gw-b", &creds_b);
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
    let port = addrs.mqtt.unwrap().port();
    let store = AnyStore::connect(&sqlite_url(&data)).await.unwrap();
    let a_password = mqtt_password(&creds_a);
    let a_login = ("north-yard/gw-a", a_password.as_str());
    let context = || format!("hub log:\n{}", hub.log_text());
    let (received, agent) =
        b_delivers_while_a_probes(dir.path(), port, &store, a_login, &creds_b, context).await;
    assert!(received.is_empty(), "A read B's traffic: {received:?}");
    eventually("A's subscription refused", context, || async {
        hub.log_text()
            .contains("closed by the authorisation front")
            .then_some(())
    })
    .await;
    // A publishing on B's status, and connecting with B's client id.
    let (_a, mut a_seen) = a_publishes_on_bs_status(port, "chitti-north-yard-gw-b", a_login).await;
    assert!(
        tokio::time::timeout(HANG_GUARD, a_seen.recv())
            .await
            .unwrap()
            .is_none(),
        "A's connection is closed"
    );
    // The front closes the socket, then logs why: the client can see the close first.
    eventually("the front naming A's refused publish", context, || async {
        hub.log_text()
            .contains(r#"publish on \"chitti/v1/north-yard/gw-b/status\""#)
            .then_some(())
    })
    .await;
    assert_eq!(
        store.dead_letter_count().await.unwrap(),
        0,
        "nothing of A's reached ingest"
    );
    // B kept its session all along: its link never dropped.
    assert!(
        !agent.log_text().contains("mqtt link down"),
        "B was disconnected:\n{}",
        agent.log_text()
    );
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_mosquitto_acl_confines_each_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let (store_url, creds_a, creds_b) = enrol_a_and_b_for_an_external_broker(dir.path());
    let passwd = dir.path().join("chitti.passwd");
    for (i, (user, pw)) in [
        ("chitti-hub", "hub-secret".to_string()),
        ("north-yard/gw-a", mqtt_password(&creds_a)),
        ("north-yard/gw-b", mqtt_password(&creds_b)),
    ]
    .iter()
    .enumerate()
    {
        let mut cmd = std::process::Command::new("mosquitto_passwd");
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        assert!(cmd
            .arg(&passwd)
            .args([user, pw.as_str()])
            .status()
            .unwrap()
            .success());
    }
    // The shipped configuration, with this test's file paths and without its
    // listener and persistence (the test's own are used).
    let shipped = workspace_root().join("deploy/brokers/mosquitto");
    let conf: String = std::fs::read_to_string(shipped.join("mosquitto.conf"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|l| !l.starts_with("listener") && !l.starts_with("persistence"))
        .map(|l| match l.split_once(' ') {
            Some(("password_file", _)) => format!("password_file {}", passwd.display()),
            Some(("acl_file", _)) => format!("acl_file {}", shipped.join("chitti.acl").display()),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(conf.contains("use_username_as_clientid true"), "{conf}");
    let broker = Mosquitto::start(dir.path(), &conf);
    let config = external_hub_config(
        dir.path(),
        &store_url,
        &broker.url(),
        Some(("chitti-hub", "hub-secret")),
    );
    let config_s = config.display().to_string();
    let (hub, _) = start_hub(&["--config", &config_s], &dir.path().join("hub.log"));
    let store = AnyStore::connect(&store_url).await.unwrap();
    let a_password = mqtt_password(&creds_a);
    let a_login = ("north-yard/gw-a", a_password.as_str());
    let context = || {
        format!(
            "hub log:\n{}\nmosquitto log:\n{}",
            hub.log_text(),
            broker.log_text()
        )
    };
    // B's findings go through and its acks come back (the ACL lets the right traffic
    // through), while A reads nothing of it.
    let (received, agent) =
        b_delivers_while_a_probes(dir.path(), broker.port, &store, a_login, &creds_b, context)
            .await;
    assert!(received.is_empty(), "A read B's traffic: {received:?}");
    // A publishing on B's status is denied by the broker; A's client id is its own.
    let (_a, _a_seen) = a_publishes_on_bs_status(broker.port, "north-yard/gw-b", a_login).await;
    eventually("the broker denying A's publish", context, || async {
        broker
            .log_text()
            .contains("Denied PUBLISH from north-yard/gw-a")
            .then_some(())
    })
    .await;
    assert_eq!(store.dead_letter_count().await.unwrap(), 0, "{}", context());
    let log = broker.log_text();
    assert!(
        !log.contains("Client north-yard/gw-b already connected"),
        "A took B's session:\n{log}"
    );
    assert!(
        !agent.log_text().contains("mqtt link down"),
        "B was disconnected:\n{}",
        agent.log_text()
    );
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}

/// A hub on SQLite in `dir`, its broker and HTTP on free ports, with these extra lines
/// in its `[http]` section.
fn hub_with_http_settings(dir: &std::path::Path, http: &str) -> (Process, HubAddrs) {
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\ndata_dir = \"{}\"\n[broker.embedded]\nlisten = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n{http}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let config_s = config.display().to_string();
    start_hub(&["--config", &config_s], &dir.join("hub.log"))
}

/// Slowloris: sockets that send a header a little at a time (or nothing) are closed
/// after `http.header_read_timeout_s`, and beyond `http.max_connections` a new
/// connection is closed at once; the hub answers again as soon as they are gone.
#[test]
fn slow_and_surplus_http_connections_are_closed() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (hub, addrs) =
        hub_with_http_settings(dir.path(), "header_read_timeout_s = 5\nmax_connections = 8");
    let open = || {
        let s = std::net::TcpStream::connect(addrs.http).unwrap();
        s.set_read_timeout(Some(HANG_GUARD)).unwrap();
        s
    };
    // Eight slow clients: a first line and one header, never the end of the header.
    let mut slow: Vec<_> = (0..8)
        .map(|_| {
            let mut s = open();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")
                .unwrap();
            s
        })
        .collect();
    // A ninth connection finds every slot taken: closed at once, while the eight are
    // still open (their timeout has not passed: a read would block).
    let mut surplus = open();
    let _ = surplus.write_all(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n");
    let mut buf = [0u8; 64];
    assert!(
        matches!(surplus.read(&mut buf), Ok(0) | Err(_)),
        "the ninth connection is closed"
    );
    slow[0].set_nonblocking(true).unwrap();
    assert!(
        matches!(slow[0].read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the slow clients are still held before their timeout"
    );
    slow[0].set_nonblocking(false).unwrap();
    // Each slow client is closed by the header-read timeout (a 408 or nothing, then
    // end of stream), not left hanging.
    for (i, s) in slow.iter_mut().enumerate() {
        let mut answer = Vec::new();
        let read = s.read_to_end(&mut answer);
        assert!(
            read.is_ok()
                || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "slow client {i}: {read:?}"
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "slow client {i}: {text}"
        );
    }
    // The slots are free again.
    let ok = ureq::get(format!("http://{}/healthz", addrs.http))
        .call()
        .expect("healthz after the slow clients are gone");
    assert_eq!(ok.status(), 200);
    assert!(
        hub.log_text().contains("connection refused at the cap"),
        "{}",
        hub.log_text()
    );
    assert!(hub.terminate().success());
}

/// Enrols gateways A and B into a SQLite hub store in `dir` (before any broker runs);
/// the store's URL and their credential folders.
fn enrol_a_and_b_for_an_external_broker(
    dir: &std::path::Path,
) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let store_url = sqlite_url(&dir.join("data"));
    let (creds_a, creds_b) = (dir.join("gw-a"), dir.join("gw-b"));
    let probe_config = external_hub_config(dir, &store_url, "mqtt://127.0.0.1:1", None);
    let probe_s = probe_config.display().to_string();
    enrol(&["--config", &probe_s], "north-yard", "gw-a", &creds_a);
    enrol(&["--config", &probe_s], "north-yard", "gw-b", &creds_b);
    (store_url, creds_a, creds_b)
}

/// A, logged in as itself (with `client_id`), publishes an "online" status on B's
/// topic; A's client (kept, so its connection stays until the broker drops it) and what
/// it receives afterwards (closed when the broker drops A).
async fn a_publishes_on_bs_status(
    port: u16,
    client_id: &str,
    a_login: (&str, &str),
) -> (
    AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish>,
) {
    // The publish must reach the wire for the refusal to be about it: a connection
    // that ends before rumqttc wrote it (seen once on CI, right after CONNACK) proves
    // nothing, so that attempt is repeated, naming why it ended.
    let mut early_ends = Vec::new();
    for _ in 0..3 {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_credentials(a_login.0, a_login.1);
        let (a, mut eventloop) = AsyncClient::new(options, 8);
        a.publish(
            "chitti/v1/north-yard/gw-b/status",
            QoS::AtLeastOnce,
            true,
            b"{\"online\":true}".to_vec(),
        )
        .await
        .unwrap();
        let written = tokio::time::timeout(HANG_GUARD, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        })
        .await
        .expect("A's publish written or its connection ended in time");
        match written {
            Ok(()) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(async move {
                    while let Ok(event) = eventloop.poll().await {
                        if let Event::Incoming(Packet::Publish(p)) = event {
                            let _ = tx.send(p);
                        }
                    }
                });
                return (a, rx);
            }
            Err(e) => early_ends.push(e),
        }
    }
    panic!("A's connection ended before its publish was written, three times: {early_ends:?}");
}

/// The hub's resident memory (`VmRSS`), bytes.
fn rss_bytes(hub: &Process) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", hub.child.id())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// One HTTP/1.1 request on a fresh connection; the status code.
fn raw_request(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
}

/// Memory an unauthenticated client can make the hub keep is bounded: 2 000 failed
/// sign-ins with 32 KiB user names and 2 000 evidence uploads claiming 32 KiB gateway
/// names (64 MiB sent each) leave the hub's resident memory within a few MiB of where
/// it was (measured from outside the process). Before: every failed name and every
/// claimed gateway was kept (~1.5 MB per 1 000 names of this size, and a rate-limit
/// bucket per claim).
#[test]
fn unauthenticated_floods_do_not_grow_the_hubs_memory() {
    let dir = tempfile::tempdir().unwrap();
    // A rate limit high enough that every request reaches its handler.
    let (hub, addrs) = hub_with_http_settings(dir.path(), "requests_per_minute = 10000000");
    let login = |i: usize| {
        let name = format!("{i:06}{}", "n".repeat(32 << 10));
        let body = serde_json::json!({ "username": name, "password": "x" }).to_string();
        raw_request(
            addrs.http,
            &format!(
                "POST /api/v1/auth/login HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ),
            body.as_bytes(),
        )
    };
    let upload = |i: usize| {
        let gateway = format!("site/{i:06}{}", "g".repeat(32 << 10));
        raw_request(
            addrs.http,
            &format!(
                "PUT /api/v1/evidence/{} HTTP/1.1\r\nHost: hub\r\nX-Chitti-Gateway: {gateway}\r\n\
                 X-Chitti-Signature: {}\r\nContent-Length: 4\r\nConnection: close\r\n\r\n",
                "a".repeat(64),
                "0".repeat(128)
            ),
            b"blob",
        )
    };
    // Warm up (allocator arenas, caches), then measure.
    for i in 0..50 {
        login(i);
        upload(i);
    }
    let before = rss_bytes(&hub);
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..2000 {
        *statuses.entry(login(1000 + i)).or_insert(0u32) += 1;
        *statuses.entry(upload(1000 + i)).or_insert(0u32) += 1;
    }
    let after = rss_bytes(&hub);
    let growth = after as i64 - before as i64;
    eprintln!(
        "hub RSS: {} MiB before, {} MiB after 2 000 × 32 KiB user names and 2 000 × 32 KiB \
         gateway claims (growth {} KiB); answers {statuses:?}; rerun: cargo nextest run -p \
         chitti-e2e --test security unauthenticated_floods",
        before >> 20,
        after >> 20,
        growth / 1024
    );
    // Every answer a refusal (401, or 429 once the sign-in limits trip).
    assert!(
        statuses.keys().all(|s| [401, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(
        growth < 16 << 20,
        "the hub kept {} MiB for 128 MiB of refused requests",
        growth >> 20
    );
    assert!(hub.terminate().success());
}

/// The shipped NATS configuration, its gateway block copied once per gateway as an
/// operator would: B's findings travel to the hub (one replica, plain subscriptions)
/// and its acks back, A reads nothing of B's and cannot publish on B's topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_nats_permissions_confine_each_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let (store_url, creds_a, creds_b) = enrol_a_and_b_for_an_external_broker(dir.path());
    let shipped =
        std::fs::read_to_string(workspace_root().join("deploy/brokers/nats/chitti.conf")).unwrap();
    let gateways = [
        NatsGatewayLogin::new("north-yard", "gw-a", &mqtt_password(&creds_a)),
        NatsGatewayLogin::new("north-yard", "gw-b", &mqtt_password(&creds_b)),
    ];
    let config = with_nats_gateways(&shipped, &gateways)
        .replace("HUB_PASSWORD", "hub-secret")
        .replace("listen: 127.0.0.1:4222", "listen: 127.0.0.1:NATS_PORT")
        .replace("store_dir: \"/var/lib/nats\"", "store_dir: \"STORE_DIR\"")
        .replace(
            "mqtt { listen: 0.0.0.0:1883 }",
            "mqtt { listen: 127.0.0.1:MQTT_PORT }",
        );
    let nats = NatsServer::start(dir.path(), &config);
    let hub_config = external_hub_config_in_group(
        dir.path(),
        &store_url,
        &format!("mqtt://127.0.0.1:{}", nats.mqtt_port),
        Some(("chitti-hub", "hub-secret")),
        "",
    );
    let hub_s = hub_config.display().to_string();
    let (hub, _) = start_hub(&["--config", &hub_s], &dir.path().join("hub.log"));
    let store = AnyStore::connect(&store_url).await.unwrap();
    let a_password = mqtt_password(&creds_a);
    let a_login = ("north-yard/gw-a", a_password.as_str());
    let context = || {
        format!(
            "hub log:\n{}\nnats log:\n{}",
            hub.log_text(),
            nats.log_text()
        )
    };
    let (received, agent) = b_delivers_while_a_probes(
        dir.path(),
        nats.mqtt_port,
        &store,
        a_login,
        &creds_b,
        context,
    )
    .await;
    assert!(received.is_empty(), "A read B's traffic: {received:?}");
    let (_a, _a_seen) = a_publishes_on_bs_status(nats.mqtt_port, "a-writes", a_login).await;
    eventually("NATS refusing A's publish", context, || async {
        nats.log_text()
            .contains(r#"Publish Violation - User "north-yard/gw-a", Subject "chitti.v1.north-yard.gw-b.status""#)
            .then_some(())
    })
    .await;
    assert!(
        nats.log_text()
            .contains(r#"Subscription Violation - User "north-yard/gw-a""#),
        "{}",
        context()
    );
    assert_eq!(store.dead_letter_count().await.unwrap(), 0, "{}", context());
    assert!(agent.terminate().success());
    assert!(hub.terminate().success());
}
