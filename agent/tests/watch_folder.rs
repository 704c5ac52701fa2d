//! The folder source end to end: real FLIR files dropped into a watched folder reach the
//! hub; a corrupt file is quarantined with its reason and the agent carries on; a file
//! already processed is not reported again after a restart.

mod support;

use chitti_test_support::fixture;
use support::*;

fn folder_config(site: &str, folder: &std::path::Path, outbox: &std::path::Path) -> String {
    format!(
        r#"
version = 1
[identity]
site = "{site}"
gateway = "gw-1"
[[camera]]
id = "drop"
[camera.source]
kind = "rjpeg_dir"
path = "{folder}"
settle_ms = 100
rescan_s = 1
[outbox]
path = "{outbox}"
[mqtt]
url = "mqtt://127.0.0.1:1883"
hub_public_keys = ["{TEST_HUB_PUBLIC_KEY}"]
reconnect_min_ms = 50
[health]
status_interval_s = 1
"#,
        folder = folder.display(),
        outbox = outbox.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_files_are_analysed_corrupt_ones_quarantined_and_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let site = format!("mosq-drop-{}", std::process::id());
    let mut hub = TestHub::start(1883, &site).await;
    let folder = dir.path().join("drop");
    std::fs::create_dir(&folder).unwrap();
    let outbox = dir.path().join("outbox");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, folder_config(&site, &folder, &outbox)).unwrap();
    let log = dir.path().join("agent.log");
    let agent = AgentProcess::start(&config, &log);

    // A corrupt R-JPEG: a real JPEG header, then garbage where the FLIR segments go.
    let mut corrupt = std::fs::read(fixture("flir_t640_png.jpg")).unwrap();
    corrupt.truncate(3000);
    std::fs::write(folder.join("IR_0001.jpg"), &corrupt).unwrap();
    std::fs::write(folder.join("notes.txt"), "not a thermogram").unwrap();
    let t640 = std::fs::read(fixture("flir_t640_png.jpg")).unwrap();
    std::fs::write(folder.join("IR_0002.jpg"), &t640).unwrap();

    let ledger = hub
        .wait_for("the T640's findings", |l| {
            !l.findings.is_empty()
                && l.status
                    .as_ref()
                    .and_then(|s| s.buffer.as_ref())
                    .is_some_and(|b| b.depth == 0)
        })
        .await;
    let sha = chitti_agent::analysis::sha256_hex(&t640);
    let count = ledger.findings.len();
    assert!(ledger.findings.values().all(|f| {
        f.camera == "drop"
            && f.source == chitti_common::finding::FindingSource::Rjpeg
            && f.evidence.as_ref().is_some_and(|e| e.sha256 == sha)
    }));
    // The T640 fixture's hottest region is 97.9 °C: level 3 of utility-absolute.
    assert!(ledger
        .findings
        .values()
        .any(|f| f.severity.level == 3 && f.hotspot.max_c > 97.0));

    // Quarantined with the reason beside it; the text file is left alone.
    let quarantined = folder.join("quarantine/IR_0001.jpg");
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while !folder.join("quarantine/IR_0001.jpg.reason.txt").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "not quarantined: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(quarantined.exists() && !folder.join("IR_0001.jpg").exists());
    let reason = std::fs::read_to_string(folder.join("quarantine/IR_0001.jpg.reason.txt")).unwrap();
    assert!(reason.contains("IR_0001.jpg"), "{reason}");
    assert!(folder.join("notes.txt").exists());

    // The same content under another name, and a restart: nothing new.
    assert!(agent.terminate().success());
    std::fs::write(folder.join("IR_0002-copy.jpg"), &t640).unwrap();
    let agent = AgentProcess::start(&config, &log);
    // A T420 file proves the restarted agent is processing.
    std::fs::copy(
        fixture("flir_t420_png_640x480.jpg"),
        folder.join("IR_0003.jpg"),
    )
    .unwrap();
    let t420 = chitti_agent::analysis::sha256_hex(
        &std::fs::read(fixture("flir_t420_png_640x480.jpg")).unwrap(),
    );
    let ledger = hub
        .wait_for("the T420 finding", |l| {
            l.findings
                .values()
                .any(|f| f.evidence.as_ref().is_some_and(|e| e.sha256 == t420))
        })
        .await;
    let from_t640 = ledger
        .findings
        .values()
        .filter(|f| f.evidence.as_ref().is_some_and(|e| e.sha256 == sha))
        .count();
    assert_eq!(from_t640, count, "a processed file is not reported again");
    assert!(agent.terminate().success());
}
