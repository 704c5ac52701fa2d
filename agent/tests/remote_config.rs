//! Configuration from the hub against the real agent binary and a real broker (plain
//! rumqttd: anyone may publish anything, so forgeries reach the agent): the outbox's
//! backlog survives a reconfiguration with nothing lost or sent twice, a document not
//! signed by the pinned hub key or not newer than what runs is ignored and logged, a
//! newer one signed by the hub is applied, and a change that loses the broker is undone
//! even when the agent is killed during its probation.

mod support;

use chitti_common::protocol::{ConfigState, ConfigStatus, DesiredConfig};
use chitti_common::signing::{sign_desired_config, signing_key_from_seed, SignedReport};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;
use tokio::sync::watch;

/// A client standing in for the hub's publisher, reading the gateway's `/config/state`.
struct ConfigChannel {
    client: AsyncClient,
    states: watch::Receiver<Option<ConfigState>>,
}

impl ConfigChannel {
    async fn start(port: u16, site: &str, gateway: &str) -> Self {
        let mut options = MqttOptions::new(format!("config-{site}"), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let topic = format!("chitti/v1/{site}/{gateway}/config/state");
        client.subscribe(&topic, QoS::AtLeastOnce).await.unwrap();
        let (tx, states) = watch::channel(None);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic => {
                        // The agent's own key signs it; what it says is what is tested.
                        let envelope: SignedReport<'_> =
                            serde_json::from_slice(&p.payload).expect("a signed report");
                        let state: ConfigState =
                            serde_json::from_str(envelope.report.get()).expect("a config state");
                        tx.send_replace(Some(state));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Self { client, states }
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .await
            .unwrap();
    }

    /// Waits for a report of `version` with `status`.
    async fn reported(
        &self,
        version: u64,
        status: ConfigStatus,
        log: &std::path::Path,
    ) -> ConfigState {
        let mut states = self.states.clone();
        let wait = states.wait_for(|s| {
            s.as_ref()
                .is_some_and(|s| s.version == version && s.status == status)
        });
        let found = match tokio::time::timeout(HANG_GUARD, wait).await {
            Ok(Ok(state)) => state.clone(),
            _ => None,
        };
        found.unwrap_or_else(|| {
            panic!(
                "no {status:?} report for version {version}; last {:?}\n{}",
                self.states.borrow(),
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
    }
}

fn desired(version: u64, config: &str) -> DesiredConfig {
    DesiredConfig {
        version,
        config: config.to_string(),
        issued_at: chrono::Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconfiguration_keeps_the_backlog_and_only_the_hubs_newer_documents_count() {
    let dir = tempfile::tempdir().unwrap();
    let port = start_rumqttd();
    let (site, gateway) = ("remote-cfg", "gw-1");
    let mut hub = TestHub::start(port, site).await;
    // Nothing is acknowledged yet: every finding stays in the outbox.
    hub.acking.store(false, Ordering::SeqCst);
    let key_file = dir.path().join("signing.key");
    std::fs::write(&key_file, hex::encode([9u8; 32])).unwrap();
    let text = simulated_config(site, gateway, port, &dir.path().join("outbox"), 60).replace(
        "[mqtt]\n",
        &format!("[mqtt]\nsigning_key_file = \"{}\"\n", key_file.display()),
    );
    let expected = expected_shapes(&text);
    assert!(expected.len() >= 10, "{expected:?}");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("agent.log");
    let channel = ConfigChannel::start(port, site, gateway).await;
    let agent = AgentProcess::start(&config, &log);
    channel.reported(0, ConfigStatus::Applied, &log).await;
    hub.wait_for("every finding in the outbox, unacknowledged", |l| {
        l.status_of(gateway)
            .and_then(|s| s.buffer.as_ref())
            .is_some_and(|b| b.depth as usize == expected.len())
    })
    .await;
    let backlog = logged_finding_ids(&log);
    assert_eq!(backlog.len(), expected.len());

    // Version 1 from the hub: a quiet scene, so the pipeline restarted on it adds nothing.
    let set_topic = format!("chitti/v1/{site}/{gateway}/config/set");
    let quiet = text.replace("seed = 7", "seed = 7\nscene = \"quiet\"");
    let v1 = sign_desired_config(&set_topic, &desired(1, &quiet), &test_hub_key()).unwrap();
    channel.publish(&set_topic, v1).await;
    let state = channel.reported(1, ConfigStatus::Applied, &log).await;
    assert_eq!(state.applied_version, Some(1));
    assert!(state.config.unwrap().contains("scene = \"quiet\""));

    // The backlog goes out after the restart, each finding once, and nothing new.
    hub.acking.store(true, Ordering::SeqCst);
    let ledger = hub
        .wait_for("an empty outbox", |l| {
            l.status_of(gateway)
                .and_then(|s| s.buffer.as_ref())
                .is_some_and(|b| b.depth == 0)
        })
        .await;
    let committed: std::collections::BTreeSet<_> = ledger.findings.keys().copied().collect();
    assert_eq!(committed, backlog, "a finding lost through the restart");
    assert_eq!(
        logged_finding_ids(&log),
        backlog,
        "a finding made again by the restart"
    );
    assert_eq!(ledger_shapes(&ledger), expected);

    // A forgery (another key): ignored, logged.
    let forger = signing_key_from_seed(&[66; 32]);
    let v2_forged = sign_desired_config(&set_topic, &desired(2, &text), &forger).unwrap();
    channel.publish(&set_topic, v2_forged).await;
    wait_for_log(&log, "not one of mqtt.hub_public_keys").await;
    // Version 3 from the hub: applied, and the report says 3 followed 1.
    let v3_text = quiet.replace("update_delta_c = 5.0", "update_delta_c = 7.0");
    let v3 = sign_desired_config(&set_topic, &desired(3, &v3_text), &test_hub_key()).unwrap();
    channel.publish(&set_topic, v3).await;
    let state = channel.reported(3, ConfigStatus::Applied, &log).await;
    assert!(state.config.unwrap().contains("update_delta_c = 7.0"));
    // An older version signed by the hub (a replay): ignored, logged, 3 still runs.
    let v2 = sign_desired_config(&set_topic, &desired(2, &text), &test_hub_key()).unwrap();
    channel.publish(&set_topic, v2).await;
    wait_for_log(&log, "older than the last decided: ignored").await;
    let text_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        text_log.contains("/config/set ignored"),
        "the forgery is logged:\n{text_log}"
    );
    assert!(
        !text_log.contains("restarting the pipeline on it version=2"),
        "the forgery or the replay was applied:\n{text_log}"
    );
    // The applied document is on disk, the one before it kept.
    let state_dir = dir.path().join("remote-config");
    let applied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("applied.json")).unwrap()).unwrap();
    let previous: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state_dir.join("applied.previous.json")).unwrap())
            .unwrap();
    assert_eq!(
        (applied["version"].as_u64(), previous["version"].as_u64()),
        (Some(3), Some(1))
    );
    assert!(agent.terminate().success());
}

/// Waits until the agent's log says `what`.
async fn wait_for_log(log: &std::path::Path, what: &str) {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log never said {what:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_loses_the_broker_is_undone_even_across_a_kill_during_probation() {
    let dir = tempfile::tempdir().unwrap();
    let port = start_rumqttd();
    let (site, gateway) = ("remote-kill", "gw-1");
    let key_file = dir.path().join("signing.key");
    std::fs::write(&key_file, hex::encode([11u8; 32])).unwrap();
    let text = format!(
        "{}[remote]\nprobation_s = 5\nallow_keys = [\"mqtt.url\"]\n",
        simulated_config(site, gateway, port, &dir.path().join("outbox"), 5).replace(
            "[mqtt]\n",
            &format!("[mqtt]\nsigning_key_file = \"{}\"\n", key_file.display()),
        )
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("agent.log");
    let channel = ConfigChannel::start(port, site, gateway).await;
    let agent = AgentProcess::start(&config, &log);
    channel.reported(0, ConfigStatus::Applied, &log).await;

    // A broker nobody answers on; the agent is killed before its probation ends.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let set_topic = format!("chitti/v1/{site}/{gateway}/config/set");
    let lost = text.replace(
        &format!("mqtt://127.0.0.1:{port}"),
        &format!("mqtt://127.0.0.1:{dead_port}"),
    );
    let v1 = sign_desired_config(&set_topic, &desired(1, &lost), &test_hub_key()).unwrap();
    channel.publish(&set_topic, v1).await;
    wait_for_log(&log, "only [mqtt] changed: replacing the link").await;
    let state_dir = dir.path().join("remote-config");
    assert!(state_dir.join("probation.json").exists());
    agent.kill9();

    // Started again on the unconfirmed change: it is on probation again, and undone.
    let agent = AgentProcess::start(&config, &log);
    let state = channel.reported(1, ConfigStatus::RolledBack, &log).await;
    assert_eq!(state.applied_version, None, "the local file runs again");
    wait_for_log(&log, "on probation again").await;
    assert!(!state_dir.join("probation.json").exists());
    assert!(!state_dir.join("applied.json").exists());
    assert!(agent.terminate().success());
}
