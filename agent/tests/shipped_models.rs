//! The models shipped in `models/`: every file a manifest names is there, has the
//! sha256 and size the manifest records, and the manifest agrees with the scene
//! generator's classes (the order is the detector's class ids).

use chitti_agent::sources::simulated::scene::CLASS_NAMES;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn manifests() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(models_dir()).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("manifest.json");
        if dir.is_dir() && manifest.exists() {
            let v: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
            out.push((dir, v));
        }
    }
    out
}

#[test]
fn shipped_files_match_their_manifest_sha256() {
    let all = manifests();
    assert!(
        all.iter()
            .any(|(_, v)| v["name"] == "chitti-components" && v["version"] == "1.0.0"),
        "models/chitti-components-v1 is shipped"
    );
    for (dir, v) in all {
        let files = v["files"].as_object().expect("files");
        assert!(files.contains_key("fp32") && files.contains_key("int8"));
        let weights = "weights".to_string();
        let mut all: Vec<(&String, &Value)> = files.iter().collect();
        if !v["weights"].is_null() {
            all.push((&weights, &v["weights"]));
        }
        for (variant, f) in all {
            let path = dir.join(f["path"].as_str().unwrap());
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                f["sha256"].as_str().unwrap(),
                "{variant}: {}",
                path.display()
            );
            assert_eq!(
                bytes.len() as u64,
                f["bytes"].as_u64().unwrap(),
                "{variant}"
            );
            assert!(bytes.len() < 8 << 20, "{variant} stays small");
            if variant != "weights" {
                // An ONNX ModelProto starts with field 1 (ir_version, varint): 0x08.
                assert_eq!(bytes[0], 0x08, "{variant} looks like ONNX");
            }
        }
        let classes: Vec<&str> = v["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(classes, CLASS_NAMES, "{}", dir.display());
        assert_eq!(v["input"]["shape"], serde_json::json!([1, 1, 256, 320]));
        assert_eq!(v["licence"], "MIT OR Apache-2.0");
    }
}
