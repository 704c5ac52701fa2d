//! The agent process with a component detector configured: a broken model or a
//! missing ONNX Runtime library degrades the detector (reported in `/status`), and
//! thermal thresholds still produce and deliver every finding; a working model is
//! reported as running.

mod support;

use std::path::{Path, PathBuf};
use support::*;

/// Runs an agent whose configuration ends with `detector` (a `[detector]` section),
/// waits until the hub stand-in has every finding the thresholds predict and a status
/// with a `detector` entry, and returns that entry and the model in the status.
async fn run_agent_with(
    gateway: &str,
    detector: &str,
) -> (String, Option<chitti_common::finding::ModelIdentity>) {
    let site = "detector-site";
    let port = start_rumqttd();
    let dir = tempfile::tempdir().unwrap();
    let mut hub = TestHub::start(port, site).await;
    let mut config_text = simulated_config(site, gateway, port, &dir.path().join("outbox"), 40);
    config_text.push_str(detector);
    let expected = expected_shapes(&config_text);
    assert!(!expected.is_empty(), "the scene must produce findings");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, &config_text).unwrap();
    let log = dir.path().join("agent.log");
    let agent = AgentProcess::start(&config, &log);
    let ledger = hub
        .wait_for(
            "every expected finding and a status naming the detector",
            |l| {
                l.findings.len() >= expected.len()
                    && l.status_of(gateway).is_some_and(|s| s.detector.is_some())
            },
        )
        .await;
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ledger_shapes(&ledger), expected, "log: {}", log_text());
    let status = ledger.status_of(gateway).unwrap().clone();
    let exit = agent.terminate();
    assert!(exit.success(), "{exit:?}; log: {}", log_text());
    (status.detector.unwrap(), status.model)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_model_degrades_the_detector_and_thresholds_still_deliver_findings() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::write(&model, b"not an onnx model").unwrap();
    let (detector, model_in_status) = run_agent_with(
        "gw-corrupt",
        &format!(
            "[detector]\nenabled = true\nmodel = \"{}\"\nlibrary = \"{}\"\n",
            model.display(),
            ort_library().display()
        ),
    )
    .await;
    assert!(
        detector.starts_with(&format!(
            "degraded (onnx runtime rejected the model {}",
            model.display()
        )),
        "{detector}"
    );
    assert_eq!(model_in_status, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_library_degrades_the_detector_and_thresholds_still_deliver_findings() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("libonnxruntime.so.1.32.0");
    let (detector, model_in_status) = run_agent_with(
        "gw-nolib",
        &format!(
            "[detector]\nenabled = true\nmodel = \"{}\"\nlibrary = \"{}\"\n",
            fixture("yolov8_1ch.onnx").display(),
            missing.display()
        ),
    )
    .await;
    assert_eq!(
        detector,
        format!(
            "degraded (onnx runtime library not found at {} (from detector.library))",
            missing.display()
        )
    );
    assert_eq!(model_in_status, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_model_is_reported_in_the_status() {
    let (detector, model_in_status) = run_agent_with(
        "gw-model",
        &format!(
            "[detector]\nenabled = true\nmodel = \"{}\"\nlibrary = \"{}\"\nrate_hz = 5.0\n",
            fixture("yolov8_1ch.onnx").display(),
            ort_library().display()
        ),
    )
    .await;
    assert_eq!(detector, "ok (fixture-yolov8 1)");
    let model = model_in_status.expect("the model in /status");
    assert_eq!(
        (model.name.as_str(), model.version.as_str()),
        ("fixture-yolov8", "1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_detector_section_the_status_says_disabled() {
    let (detector, model_in_status) = run_agent_with("gw-plain", "").await;
    assert_eq!(detector, "disabled");
    assert_eq!(model_in_status, None);
}
