//! Helpers shared by the cross-binary scenarios in `tests/tests/`.
//!
//! Scenarios run the real `chitti-agent` and `chitti-hub` executables. Cargo only hands
//! a package the paths of its *own* binaries, so [`binary`] finds the workspace's from
//! the test executable's location (`target/<profile>/deps/…` → `target/<profile>/`)
//! and builds them with the same cargo if they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Path of a workspace binary (`chitti-agent`, `chitti-hub`), built if needed.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--bin", name])
            .current_dir(workspace_root());
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
    }
    path
}

/// The workspace root (the folder with the virtual `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A FLIR fixture from `tests/fixtures/flir/`.
pub fn flir_fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures/flir").join(name)
}
