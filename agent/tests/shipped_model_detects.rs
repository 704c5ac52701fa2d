//! The shipped model (`models/chitti-components-v1/`) through the real ONNX Runtime and
//! the real `chitti-agent inspect --model` binary, on the fixed synthetic frames of
//! `tests/fixtures/synth/` (their expected components in `expected.json`, drawn by the
//! scene generator): every expected component found with its class and a box within
//! IoU 0.5, nothing else; three bushing phases with B 20 °C hotter give B a
//! `neta-similar` assessment naming its reference phase; a cold CT/PT phase is the cool
//! exception.
//!
//! The library comes from `ORT_DYLIB_PATH` (tests/run-all.sh exports it); without it
//! these tests fail on purpose.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::ort_library;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model(file: &str) -> PathBuf {
    repo().join("models/chitti-components-v1").join(file)
}

fn synth_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/synth")
        .join(name)
}

/// `chitti-agent inspect FILE --model MODEL --json`, parsed.
fn inspect(file: &Path, model: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_chitti-agent"))
        .arg("inspect")
        .arg(file)
        .arg("--model")
        .arg(model)
        .arg("--json")
        .env("ORT_DYLIB_PATH", ort_library())
        .output()
        .expect("run chitti-agent inspect");
    assert!(
        out.status.success(),
        "inspect {} --model {} failed: {}",
        file.display(),
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect --json prints one JSON object")
}

fn rect(v: &Value) -> [f64; 4] {
    if let Some(a) = v.as_array() {
        return [0, 1, 2, 3].map(|i| a[i].as_f64().unwrap());
    }
    ["x", "y", "w", "h"].map(|k| v[k].as_f64().unwrap())
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    let inter = ix * iy;
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

fn expected_frames() -> Vec<Value> {
    let text = std::fs::read_to_string(synth_fixture("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    expected["frames"].as_array().unwrap().clone()
}

/// The detected component matching `want` (same class, best IoU ≥ 0.5).
fn matching<'a>(found: &'a [Value], want: &Value) -> Option<&'a Value> {
    let wbox = rect(&want["bbox"]);
    found
        .iter()
        .filter(|c| c["class"] == want["class"])
        .map(|c| (c, iou(rect(&c["bbox"]), wbox)))
        .filter(|(_, iou)| *iou >= 0.5)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

fn finds_every_expected_component(model_file: &str) {
    let model = model(model_file);
    for frame in expected_frames() {
        let file = frame["file"].as_str().unwrap();
        let report = inspect(&synth_fixture(file), &model);
        assert_eq!(
            report["quality"]["quantitative"], true,
            "{file}: a clean synthetic frame passes the quality gate: {}",
            report["quality"]
        );
        let found = report["components"].as_array().expect("components").clone();
        let want = frame["components"].as_array().unwrap();
        assert_eq!(
            found.len(),
            want.len(),
            "{file} ({model_file}): found {found:#?}, expected {want:#?}"
        );
        for w in want {
            let Some(c) = matching(&found, w) else {
                panic!(
                    "{file} ({model_file}): no {} near {} in {found:#?}",
                    w["class"], w["bbox"]
                );
            };
            let confidence = c["confidence"].as_f64().unwrap();
            assert!((0.25..=1.0).contains(&confidence), "{file}: {c}");
        }
    }
}

#[test]
fn int8_model_finds_every_expected_component() {
    finds_every_expected_component("model.int8.onnx");
}

#[test]
fn fp32_model_finds_every_expected_component() {
    finds_every_expected_component("model.fp32.onnx");
}

/// The component of `found` matching the expected component of `phase` in `frame`.
fn phase<'a>(frame: &Value, found: &'a [Value], phase: &str) -> &'a Value {
    let want = frame["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["phase"] == phase)
        .unwrap();
    matching(found, want).unwrap_or_else(|| panic!("phase {phase} not detected: {found:#?}"))
}

#[test]
fn a_phase_20_c_hotter_is_a_neta_similar_finding_naming_its_reference() {
    let frames = expected_frames();
    let frame = frames
        .iter()
        .find(|f| f["file"] == "three-bushings-b-hot.png")
        .unwrap();
    let report = inspect(
        &synth_fixture("three-bushings-b-hot.png"),
        &model("model.int8.onnx"),
    );
    let found = report["components"].as_array().unwrap().clone();
    let (a, b, c) = (
        phase(frame, &found, "A"),
        phase(frame, &found, "B"),
        phase(frame, &found, "C"),
    );
    for p in [a, b, c] {
        assert_eq!(p["phase_group"]["size"], 3, "one group of three: {p}");
    }
    let b_severity = &b["severity"];
    assert_eq!(b_severity["table"], "neta-similar", "{b}");
    let delta = b["delta_t_similar_c"].as_f64().unwrap();
    assert!(
        (15.0..25.0).contains(&delta),
        "B is about 20 °C over its sibling: {delta}"
    );
    // NETA similar-component table: > 15 °C is a major discrepancy, the top level.
    assert_eq!(b_severity["level"], 3, "{b_severity}");
    assert_eq!(b_severity["qualitative"], Value::Null, "{b_severity}");
    let reference = b["similar_to"].as_str().unwrap();
    let labels = [a, c].map(|p| p["phase_group"]["label"].as_str().unwrap().to_string());
    assert!(
        labels.iter().any(|l| l == reference),
        "B's reference {reference:?} is phase A or C ({labels:?})"
    );
    for healthy in [a, c] {
        assert!(
            healthy["severity"]["level"].as_u64() < b_severity["level"].as_u64(),
            "a healthy phase ranks below the hot one: {healthy}"
        );
    }
}

#[test]
fn an_open_phase_is_never_the_baseline_of_its_loaded_siblings() {
    // Phase C of the CT/PT row carries no load: it sits 9.5 °C below A and B, short of
    // the table's 10 °C cool-exception step. It must not become the reference that
    // would flag the loaded phases; it is compared against them, on the cold side.
    let frames = expected_frames();
    let frame = frames
        .iter()
        .find(|f| f["file"] == "ct-pt-row-c-cold-and-disconnector.png")
        .unwrap();
    let report = inspect(
        &synth_fixture("ct-pt-row-c-cold-and-disconnector.png"),
        &model("model.int8.onnx"),
    );
    let found = report["components"].as_array().unwrap().clone();
    let cold = phase(frame, &found, "C");
    assert_eq!(cold["phase_group"]["reference"], false, "{cold}");
    assert_eq!(cold["severity"]["table"], "neta-similar", "{cold}");
    let delta = cold["delta_t_similar_c"].as_f64().unwrap();
    assert!(delta < -5.0, "C is colder than its reference: {delta}");
    assert_eq!(
        cold["severity"]["cool_exception"],
        delta <= -10.0,
        "the table's own step decides the cool exception: {cold}"
    );
    // The loaded phase that is not the baseline shows no imbalance (the baseline itself
    // is read against ambient).
    let loaded = [phase(frame, &found, "A"), phase(frame, &found, "B")];
    assert!(loaded.iter().any(|p| p["phase_group"]["reference"] == true));
    for p in loaded {
        if p["severity"]["table"] == "neta-similar" {
            assert_eq!(p["severity"]["level"], 0, "{p}");
        }
    }
}
