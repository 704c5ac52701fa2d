//! Every committed hub configuration goes through the real parser and validator.

use chitti_hub::config::HubConfig;
use std::path::{Path, PathBuf};

fn tomls(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            tomls(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

#[test]
fn every_committed_hub_configuration_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["deploy", "firmware-config"] {
        tomls(&root.join(dir), &mut files);
    }
    // Hub configurations only (agent ones have an [identity]).
    files.retain(|f| !std::fs::read_to_string(f).unwrap().contains("[identity]"));
    assert!(files.len() >= 2, "{files:?}");
    for file in &files {
        HubConfig::load(file).unwrap_or_else(|e| panic!("{e}"));
    }
    // The printed default is a valid file too.
    HubConfig::from_toml(chitti_hub::config::DEFAULT_CONFIG_TOML, "default", &root).unwrap();
}
