//! The agent process with hardware stand-ins and hard limits: a Pelco-D pan-tilt head
//! on a pseudo-terminal (its far end decodes every frame), and an outbox at its byte cap
//! during an outage.

mod support;

use chitti_agent::patrol::pelco_d::{Command, Decoder};
use std::io::Read;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patrol_tags_findings_with_the_preset_and_asset_it_dwells_at() {
    let port = start_rumqttd();
    let site = "rumqttd-patrol";
    let mut hub = TestHub::start(port, site).await;
    let (mut master, slave) = serialport::TTYPort::pair().expect("pseudo-terminal pair");
    let slave_path = serialport::SerialPort::name(&slave).expect("the slave has a name");
    // The head: decode every frame written to it, in order.
    let (frames_tx, frames_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut decoder = Decoder::new();
        let mut buf = [0u8; 64];
        loop {
            match master.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    decoder.push(&buf[..n]);
                    while let Some(frame) = decoder.next_frame() {
                        if frames_tx
                            .send(frame.map(|f| (f.address, f.command())))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(_) => return,
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config_text = format!(
        r#"
version = 1
[identity]
site = "{site}"
gateway = "gw-1"
[[camera]]
id = "ptz-1"
asset = "yard-overview"
[camera.source]
kind = "simulated"
width = 160
height = 120
fps = 20.0
speed = 60.0
[camera.patrol]
serial = "{slave_path}"
baud = 9600
address = 23
[[camera.patrol.preset]]
id = "bay1"
pelco_preset = 3
asset = "bay1-cb"
settle_ms = 100
dwell_ms = 1500
[[camera.patrol.preset]]
id = "bay2"
pelco_preset = 7
asset = "bay2-ct"
settle_ms = 100
dwell_ms = 1500
[analysis.tracking]
raise_after_frames = 2
[outbox]
path = "{outbox}"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
hub_public_keys = ["{TEST_HUB_PUBLIC_KEY}"]
[health]
status_interval_s = 1
"#,
        outbox = dir.path().join("outbox").display()
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, config_text).unwrap();
    let agent = AgentProcess::start(&config, &dir.path().join("agent.log"));
    let ledger = hub
        .wait_for("findings at both presets", |l| {
            ["bay1", "bay2"]
                .iter()
                .all(|p| l.findings.values().any(|f| f.preset.as_deref() == Some(*p)))
        })
        .await;
    for f in ledger.findings.values() {
        let expected_asset = match f.preset.as_deref() {
            Some("bay1") => "bay1-cb",
            Some("bay2") => "bay2-ct",
            other => panic!("finding {} without a dwelling preset: {other:?}", f.id),
        };
        assert_eq!(f.asset.as_deref(), Some(expected_asset));
    }
    assert!(agent.terminate().success());
    drop(slave);
    // Every frame the head received was valid, for address 23, a go-to-preset in tour order.
    let received: Vec<_> = frames_rx.try_iter().collect();
    assert!(received.len() >= 2, "{received:?}");
    for (i, frame) in received.iter().enumerate() {
        let (address, command) = frame.as_ref().expect("valid checksum");
        assert_eq!(*address, 23);
        let expected = if i % 2 == 0 { 3 } else { 7 };
        assert_eq!(
            command.as_ref().unwrap(),
            &Command::GoToPreset(expected),
            "frame {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_at_its_cap_evicts_evidence_first_and_keeps_every_critical_finding() {
    let port = start_rumqttd();
    let site = "rumqttd-cap";
    let mut hub = TestHub::start(port, site).await;
    hub.acking.store(false, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut config_text = simulated_config(site, "gw-1", port, &dir.path().join("outbox"), 60)
        .replace("width = 160\nheight = 120", "width = 640\nheight = 480")
        .replace("[mqtt]", "[mqtt]\nmax_packet_bytes = \"1 MiB\"");
    config_text = config_text.replace(
        "resend_after_s = 5",
        "resend_after_s = 5\nmax_bytes = \"1 MiB\"",
    );
    config_text = config_text.replace(
        "status_interval_s = 1",
        "status_interval_s = 1\ntelemetry_interval_s = 1",
    );
    let expected = expected_shapes(&config_text);
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &config_text).unwrap();
    let agent = AgentProcess::start(&config, &dir.path().join("agent.log"));
    // Each finding's evidence is a ~100 KiB PNG: the cap is reached long before the end.
    let ledger = hub
        .wait_for("evictions reported in /status, the camera finished", |l| {
            l.status.as_ref().is_some_and(|s| {
                s.buffer.as_ref().is_some_and(|b| b.evicted.evidence > 0)
                    && s.cameras.first().is_some_and(|c| c.state == "finished")
            })
        })
        .await;
    let buffer = ledger.status.unwrap().buffer.unwrap();
    assert!(buffer.bytes <= 1 << 20, "within its cap: {buffer:?}");
    // The hub can commit again: whatever is left arrives.
    hub.acking.store(true, std::sync::atomic::Ordering::SeqCst);
    let ledger = hub
        .wait_for("the surviving findings", |l| {
            l.status
                .as_ref()
                .and_then(|s| s.buffer.as_ref())
                .is_some_and(|b| b.depth == 0)
                && !l.findings.is_empty()
        })
        .await;
    let status = ledger.status.as_ref().unwrap().buffer.as_ref().unwrap();
    let delivered = ledger_shapes(&ledger);
    assert_eq!(
        delivered.len() as u64 + status.evicted.findings,
        expected.len() as u64,
        "every finding was delivered or counted as evicted: {status:?}"
    );
    let critical: Vec<_> = expected.iter().filter(|s| s.2 == 3).collect();
    assert!(!critical.is_empty());
    for c in critical {
        assert!(delivered.contains(c), "critical finding {c:?} lost");
    }
    // Telemetry flows too.
    let telemetry = hub
        .wait_for("telemetry", |l| l.telemetry.is_some())
        .await
        .telemetry
        .unwrap();
    assert!(
        telemetry.disk_free_bytes.is_some_and(|b| b > 0),
        "{telemetry:?}"
    );
    assert!(agent.terminate().success());
}
