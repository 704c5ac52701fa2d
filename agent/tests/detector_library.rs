//! A missing or broken ONNX Runtime library is a clear error, never a panic.
//!
//! Its own test binary: ONNX Runtime can be loaded once per process, and these tests
//! must run in a process where no load has succeeded.

use chitti_agent::detector::{DetectorError, DetectorSettings, LibraryOrigin, OnnxDetector};
use std::path::Path;

fn settings(library: &Path) -> DetectorSettings {
    let mut s = DetectorSettings::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx/yolov8_1ch.onnx"),
    );
    s.library = Some(library.to_path_buf());
    s
}

#[test]
fn a_configured_library_that_does_not_exist_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("libonnxruntime.so.1.32.0");
    let err = OnnxDetector::load(&settings(&missing)).unwrap_err();
    assert!(
        matches!(
            &err,
            DetectorError::LibraryNotFound { path, origin: LibraryOrigin::Config } if path == &missing
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "onnx runtime library not found at {} (from detector.library)",
            missing.display()
        )
    );
}

#[test]
fn a_file_that_is_not_a_shared_library_is_refused_with_the_loader_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so.1.32.0");
    std::fs::write(&fake, b"#!/bin/sh\necho not a library\n").unwrap();
    let err = OnnxDetector::load(&settings(&fake)).unwrap_err();
    assert!(matches!(err, DetectorError::LibraryLoad { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "cannot load the onnx runtime library {} (from detector.library): ",
            fake.display()
        )),
        "{message}"
    );
    assert!(
        message.contains("invalid ELF header") || message.contains("too short"),
        "the loader's own reason: {message}"
    );
    // And a second attempt in the same process says the same: nothing half-loaded.
    let again = OnnxDetector::load(&settings(&fake)).unwrap_err();
    assert!(
        matches!(again, DetectorError::LibraryLoad { .. }),
        "{again}"
    );
}
