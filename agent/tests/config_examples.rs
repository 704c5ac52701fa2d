//! Every committed configuration goes through the real parser and validator.

use chitti_agent::config::{AgentConfig, AgentConfigFile};
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
fn every_example_configuration_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["firmware-config", "deploy"] {
        tomls(&root.join(dir), &mut files);
    }
    // Agent configurations only (the hub's have their own test).
    files.retain(|f| std::fs::read_to_string(f).unwrap().contains("[identity]"));
    assert!(files.len() >= 3, "examples: {files:?}");
    for file in &files {
        let config = AgentConfig::load(file).unwrap_or_else(|e| panic!("{e}"));
        assert!(!config.cameras.is_empty(), "{}", file.display());
    }
}
