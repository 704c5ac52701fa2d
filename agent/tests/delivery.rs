//! End-to-end delivery from the agent process to a hub stand-in over real brokers: the
//! embedded rumqttd and the machine's Mosquitto (127.0.0.1:1883).

mod support;

use support::*;

async fn findings_arrive_exactly_once(broker_port: u16, site: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start(broker_port, site).await;
    let config_text = simulated_config(site, "gw-1", broker_port, &dir.path().join("outbox"), 60);
    let expected = expected_shapes(&config_text);
    assert!(
        expected.len() >= 10,
        "the scene must produce findings: {expected:?}"
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &config_text).unwrap();
    let agent = AgentProcess::start(&config, &dir.path().join("agent.log"));
    let ledger = hub
        .wait_for("every expected finding and an empty outbox", |l| {
            l.findings.len() >= expected.len()
                && l.status
                    .as_ref()
                    .and_then(|s| s.buffer.as_ref())
                    .is_some_and(|b| b.depth == 0)
        })
        .await;
    assert_eq!(
        ledger_shapes(&ledger),
        expected,
        "log: {}",
        std::fs::read_to_string(dir.path().join("agent.log")).unwrap()
    );
    assert!(
        ledger.findings.values().all(|f| !f.historical),
        "a healthy link sends live"
    );
    assert!(ledger
        .findings
        .values()
        .all(|f| f.site == site && f.gateway == "gw-1" && f.evidence.is_some()));
    assert_eq!(ledger.malformed, 0);
    let status = agent.terminate();
    assert!(status.success(), "{status:?}");
    let ledger = hub
        .wait_for("offline status", |l| {
            l.status.as_ref().is_some_and(|s| !s.online)
        })
        .await;
    assert_eq!(
        ledger.findings.len(),
        expected.len(),
        "nothing after the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_arrive_exactly_once_through_embedded_rumqttd() {
    let port = start_rumqttd();
    findings_arrive_exactly_once(port, "rumqttd-once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_arrive_exactly_once_through_mosquitto() {
    findings_arrive_exactly_once(1883, &format!("mosq-once-{}", std::process::id())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_built_while_the_broker_is_unreachable_replays_as_historical() {
    let dir = tempfile::tempdir().unwrap();
    let site = format!("mosq-backlog-{}", std::process::id());
    let mut hub = TestHub::start(1883, &site).await;
    let proxy = CuttableProxy::start_with(1883, false).await;
    let config_text = simulated_config(&site, "gw-1", proxy.port, &dir.path().join("outbox"), 60);
    let expected = expected_shapes(&config_text);
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &config_text).unwrap();
    let log = dir.path().join("agent.log");
    let agent = AgentProcess::start(&config, &log);
    // The whole stream is analysed and stored while the broker is out of reach.
    let deadline = std::time::Instant::now() + HANG_GUARD;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.matches(" finding ").count() >= expected.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agent did not analyse the stream:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(hub.ledger().findings.is_empty());
    proxy.restore();
    let ledger = hub
        .wait_for("the replayed backlog", |l| {
            l.findings.len() >= expected.len()
                && l.status
                    .as_ref()
                    .and_then(|s| s.buffer.as_ref())
                    .is_some_and(|b| b.depth == 0)
        })
        .await;
    assert_eq!(ledger_shapes(&ledger), expected, "none lost, none invented");
    assert!(
        ledger.findings.values().all(|f| f.historical),
        "replays are historical"
    );
    // Cut mid-stream of acks and restore: still exactly the same set.
    proxy.cut();
    proxy.restore();
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_stored_before_a_kill_9_are_delivered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let site = format!("mosq-kill-{}", std::process::id());
    let mut hub = TestHub::start(1883, &site).await;
    // The hub "cannot commit" at first: findings pile up unacknowledged in the outbox.
    hub.acking.store(false, std::sync::atomic::Ordering::SeqCst);
    let outbox = dir.path().join("outbox");
    let config_text = simulated_config(&site, "gw-1", 1883, &outbox, 60);
    let expected = expected_shapes(&config_text);
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &config_text).unwrap();
    let log = dir.path().join("agent.log");
    let agent = AgentProcess::start(&config, &log);
    hub.wait_for("the agent sending", |l| {
        l.status
            .as_ref()
            .and_then(|s| s.buffer.as_ref())
            .is_some_and(|b| b.depth >= 5)
    })
    .await;
    agent.kill9();
    // What the outbox holds after the kill must all reach the hub.
    let stored = {
        let o = chitti_agent::outbox::Outbox::open(
            Box::new(chitti_agent::outbox::RedbEngine::open(&outbox).unwrap()),
            1 << 30,
            false,
        )
        .unwrap();
        o.stored_ids()
    };
    assert!(stored.len() >= 5);
    hub.acking.store(true, std::sync::atomic::Ordering::SeqCst);
    // Restart on the same outbox, with no new frames: only the backlog goes out.
    std::fs::write(&config, simulated_config(&site, "gw-1", 1883, &outbox, 0)).unwrap();
    let agent = AgentProcess::start(&config, &log);
    let ledger = hub
        .wait_for("the stored findings", |l| {
            stored.iter().all(|id| l.findings.contains_key(id))
                && l.status
                    .as_ref()
                    .and_then(|s| s.buffer.as_ref())
                    .is_some_and(|b| b.depth == 0)
        })
        .await;
    assert_eq!(
        ledger.findings.len(),
        stored.len(),
        "exactly the stored ones, each once"
    );
    assert!(ledger.findings.values().all(|f| f.historical));
    assert!(stored.len() <= expected.len());
    assert!(agent.terminate().success());
}

/// A minimal evidence endpoint: checks the gateway's signature of every
/// `PUT /api/v1/evidence/{sha}` as the hub does (201 when it verifies, 401 when not)
/// and records it with the verdict.
fn evidence_server(
    site: &'static str,
    gateway: &'static str,
    key: ed25519_dalek::VerifyingKey,
) -> (u16, std::sync::mpsc::Receiver<(String, Vec<u8>, bool)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut length = 0usize;
                    let (mut claimed, mut signature) = (String::new(), String::new());
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        let Some((name, value)) = h.split_once(':') else {
                            continue;
                        };
                        let value = value.trim().to_string();
                        match name.trim().to_ascii_lowercase().as_str() {
                            "content-length" => length = value.parse().unwrap(),
                            n if n == chitti_common::signing::GATEWAY_HEADER => claimed = value,
                            n if n == chitti_common::signing::SIGNATURE_HEADER => signature = value,
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let name = path.strip_prefix("/api/v1/evidence/").unwrap_or("");
                    let verified = claimed == format!("{site}/{gateway}")
                        && chitti_common::signing::verify_evidence(
                            site, gateway, name, &signature, &key,
                        )
                        .is_ok();
                    let answer: &[u8] = if verified {
                        b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"
                    };
                    out.write_all(answer).unwrap();
                    let _ = tx.send((path, body, verified));
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_is_uploaded_and_recomputes_the_findings_temperatures() {
    use chitti_common::analysis::{analyze_prepared, AnalysisOptions, PreparedRadiometry};
    let port = start_rumqttd();
    let dir = tempfile::tempdir().unwrap();
    let site = "rumqttd-evidence";
    let mut hub = TestHub::start(port, site).await;
    // Uploads are signed with the gateway's key (the one its batches are signed with).
    let key = chitti_common::signing::signing_key_from_seed(&[5; 32]);
    let key_file = dir.path().join("signing.key");
    std::fs::write(&key_file, hex::encode(key.to_bytes())).unwrap();
    let (http_port, uploads) = evidence_server(site, "gw-1", key.verifying_key());
    let metrics_port = free_port();
    let mut config_text = simulated_config(site, "gw-1", port, &dir.path().join("outbox"), 30);
    config_text = config_text.replace(
        "[mqtt]\n",
        &format!("[mqtt]\nsigning_key_file = \"{}\"\n", key_file.display()),
    );
    config_text = config_text.replace(
        "[health]\n",
        &format!("[evidence]\nhub_url = \"http://127.0.0.1:{http_port}\"\n[health]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n"),
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &config_text).unwrap();
    let agent = AgentProcess::start(&config, &dir.path().join("agent.log"));
    let expected = expected_shapes(&config_text);
    let ledger = hub
        .wait_for("the findings, the camera finished", |l| {
            l.findings.len() >= expected.len()
                && l.status.as_ref().is_some_and(|s| {
                    s.buffer.as_ref().is_some_and(|b| b.depth == 0)
                        && s.cameras.first().is_some_and(|c| c.state == "finished")
                })
        })
        .await;
    assert_eq!(ledger_shapes(&ledger), expected);
    let shas: std::collections::BTreeSet<String> = ledger
        .findings
        .values()
        .filter_map(|f| f.evidence.as_ref().map(|e| e.sha256.clone()))
        .collect();
    let mut received = std::collections::BTreeMap::new();
    while received.len() < shas.len() {
        let (path, body, verified) = uploads.recv_timeout(HANG_GUARD).expect("evidence uploads");
        assert!(verified, "{path} is not signed by the gateway's key");
        let sha = path.strip_prefix("/api/v1/evidence/").unwrap().to_string();
        assert_eq!(
            chitti_agent::analysis::sha256_hex(&body),
            sha,
            "the body is what the name says"
        );
        received.insert(sha, body);
    }
    assert_eq!(
        received
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        shas
    );
    // Provenance: from the evidence alone, the same analysis gives the same peak.
    let catalog = chitti_common::severity::SeverityCatalog::builtin();
    let table = catalog.get("utility-absolute").unwrap();
    for finding in ledger.findings.values() {
        let body = &received[&finding.evidence.as_ref().unwrap().sha256];
        let (raw, meta) = chitti_common::evidence::decode_radiometric_png(body).unwrap();
        let prepared =
            PreparedRadiometry::new(meta.params, &Default::default(), meta.saturated_max_c)
                .unwrap();
        let analysis =
            analyze_prepared(&raw, &prepared, table, &AnalysisOptions::default()).unwrap();
        let peak = analysis
            .hotspots
            .iter()
            .chain(&analysis.cool_exceptions)
            .map(|h| h.hotspot.max_c)
            .find(|c| (c - finding.hotspot.max_c).abs() < 0.0015);
        assert!(
            peak.is_some(),
            "finding {} max {} not recomputed from its evidence",
            finding.id,
            finding.hotspot.max_c
        );
    }
    // /metrics tells the same story.
    let body = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    assert!(
        body.contains("chitti_agent_frames_total{camera=\"sim-1\"} 30"),
        "{body}"
    );
    assert!(body.contains("chitti_agent_outbox_findings 0"), "{body}");
    assert!(body.contains("chitti_agent_mqtt_connected 1"), "{body}");
    assert!(agent.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let broker = Mosquitto::start_on(port, dir.path(), "allow_anonymous true");
    let site = "own-mosquitto-restart";
    let mut hub = TestHub::start(port, site).await;
    // A paced camera: 12 s of frames, so the stream is still running when the broker dies.
    let config_text = simulated_config(site, "gw-1", port, &dir.path().join("outbox"), 240)
        .replace("fps = 1.0\nspeed = 20.0", "fps = 20.0\nspeed = 100.0")
        .replace("unpaced = true", "unpaced = false");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &config_text).unwrap();
    let log = dir.path().join("agent.log");
    let agent = AgentProcess::start(&config, &log);
    hub.wait_for("the first findings", |l| l.findings.len() >= 2)
        .await;
    broker.kill();
    // Findings keep being made and stored while the broker is gone.
    let seen_before = hub.ledger().findings.len();
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while logged_finding_ids(&log).len() < seen_before + 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no findings while the broker was down"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _broker = Mosquitto::start_on(port, dir.path(), "allow_anonymous true");
    let ledger = hub
        .wait_for(
            "every logged finding, the camera finished, the outbox empty",
            |l| {
                l.status.as_ref().is_some_and(|s| {
                    s.buffer.as_ref().is_some_and(|b| b.depth == 0)
                        && s.cameras.first().is_some_and(|c| c.state == "finished")
                }) && logged_finding_ids(&log)
                    .iter()
                    .all(|id| l.findings.contains_key(id))
            },
        )
        .await;
    let logged = logged_finding_ids(&log);
    let received: std::collections::BTreeSet<_> = ledger.findings.keys().copied().collect();
    assert_eq!(received, logged, "exactly the findings the agent made");
    assert!(
        ledger.findings.values().any(|f| f.historical),
        "the backlog replays as historical"
    );
    assert!(
        ledger.findings.values().any(|f| !f.historical),
        "live ones before the crash are not"
    );
    assert!(agent.terminate().success());
}

/// A link that answers nothing: connected, subscribed, sending and resending, and not
/// one `/ack` for several resend periods. A clustered broker can keep a subscription
/// that delivers nothing (seen on NATS after a node restart, in the fault runner); here
/// the hub stand-in stops answering. The agent drops the connection and connects again
/// rather than waiting for ever, and once answers come its outbox empties, each finding
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_hearing_no_acknowledgement_for_several_resend_periods_connects_again() {
    let dir = tempfile::tempdir().unwrap();
    let site = format!("mosq-silent-{}", std::process::id());
    let mut hub = TestHub::start(1883, &site).await;
    hub.acking.store(false, std::sync::atomic::Ordering::SeqCst);
    let config_text = simulated_config(&site, "gw-1", 1883, &dir.path().join("outbox"), 60)
        .replace("resend_after_s = 5", "resend_after_s = 1");
    assert!(config_text.contains("resend_after_s = 1"));
    let expected = expected_shapes(&config_text);
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &config_text).unwrap();
    let log = dir.path().join("agent.log");
    let agent = AgentProcess::start(&config, &log);
    let deadline = std::time::Instant::now() + HANG_GUARD;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let silent = text.contains("no acknowledgement from the hub for several resend periods");
        if silent && text.matches("mqtt connected").count() >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not connect again after hearing nothing:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(hub.ledger().findings.len() <= expected.len());
    hub.acking.store(true, std::sync::atomic::Ordering::SeqCst);
    let ledger = hub
        .wait_for("every finding and an empty outbox", |l| {
            l.findings.len() >= expected.len()
                && l.status
                    .as_ref()
                    .and_then(|s| s.buffer.as_ref())
                    .is_some_and(|b| b.depth == 0)
        })
        .await;
    assert_eq!(ledger_shapes(&ledger), expected, "none lost, none invented");
    assert!(agent.terminate().success());
}
