//! Security regressions, as an attacker would try them against real processes.
//!
//! - **A forged acknowledgement destroys nothing.** Gateway A (enrolled, with valid
//!   broker credentials) publishes acks on gateway B's `/ack` topic while the hub's
//!   database is down: the old unsigned form, one signed with A's own key, and one
//!   that copies a batch id A watched B send. B's agent refuses all three and deletes
//!   nothing; when the database is back, every finding B made is in it.

use chitti_e2e::*;
use chitti_hub::store::{AnyStore, Store};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::time::Duration;

/// Gateway A, logged in to the hub's broker with its own credentials.
struct Attacker {
    client: AsyncClient,
    /// Finding batches A sees on B's topic (`#` is not refused by the embedded broker).
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
    let db = TestPostgres::create().await;
    let proxy = CuttableProxy::start(5432).await;
    let config = postgres_hub_config(dir.path(), &db.url_via(proxy.port));
    let config_s = config.display().to_string();
    let (creds_a, creds_b) = (dir.path().join("gw-a"), dir.path().join("gw-b"));
    enrol(&["--config", &config_s], "north-yard", "gw-a", &creds_a);
    enrol(&["--config", &config_s], "north-yard", "gw-b", &creds_b);
    let (hub, addrs) = start_hub(&["--config", &config_s], &dir.path().join("hub.log"));
    let mqtt = addrs.mqtt.unwrap();
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
        200,
    )
    .replace("fps = 1.0\nspeed = 20.0", "fps = 40.0\nspeed = 800.0")
    .replace("unpaced = true", "unpaced = false");
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
    let deletions_before = agent.log_text().matches(" ack acked=").count();
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
    assert_eq!(
        agent.log_text().matches(" ack acked=").count(),
        deletions_before,
        "nothing deleted on a forged ack\n{}",
        context()
    );

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
