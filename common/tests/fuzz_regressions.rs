//! Every input in `common/fuzz/regressions/` parses without a panic, within the heap
//! limit, to the result its name promises: `ok-*` decodes every frame, `err-*` ends
//! in a `FlirError`. Fuzzer findings are added there once fixed (see
//! `common/fuzz/README.md`).

mod support;

use std::path::PathBuf;
use support::{panic_message, parse_everything, peak_heap, Outcome};

/// The most heap one regression input may make the parser hold. The largest legal
/// frame (8192 x 8192 counts) is 128 MiB, and `err-ax8-png-8192x8192-forged.jpg`
/// reaches it from 27 KiB.
const PEAK_HEAP_LIMIT: usize = 256 << 20;

/// Inputs stay small so this test stays fast.
const MAX_INPUT_BYTES: u64 = 64 << 10;

fn regressions() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("common/fuzz/regressions")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_regression_input_parses_to_what_its_name_promises() {
    let files = regressions();
    assert!(files.len() >= 8, "the corpus is gone: {files:?}");
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name");
        let bytes = std::fs::read(path).expect("readable");
        if bytes.len() as u64 >= MAX_INPUT_BYTES {
            failures.push(format!(
                "{name}: {} bytes, keep inputs under 64 KiB",
                bytes.len()
            ));
            continue;
        }
        let (caught, peak) =
            peak_heap::measure(|| std::panic::catch_unwind(|| parse_everything(&bytes, |_| true)));
        let outcome = match caught {
            Err(payload) => {
                failures.push(format!(
                    "{name}: panicked: {}",
                    panic_message(payload.as_ref())
                ));
                continue;
            }
            Ok(Err(contract)) => {
                failures.push(format!("{name}: {contract}"));
                continue;
            }
            Ok(Ok(outcome)) => outcome,
        };
        if peak > PEAK_HEAP_LIMIT {
            failures.push(format!("{name}: held {} MiB of heap at once", peak >> 20));
        }
        let problem = if name.starts_with("ok-") {
            match &outcome {
                Outcome::Frames(frames)
                    if !frames.is_empty() && outcome.first_error().is_none() =>
                {
                    None
                }
                other => Some(format!("expected every frame to decode, got {other:?}")),
            }
        } else if name.starts_with("err-") {
            outcome
                .first_error()
                .is_none()
                .then(|| format!("expected an error, got {outcome:?}"))
        } else {
            Some("name it ok-* or err-* to say what it must parse to".to_string())
        };
        failures.extend(problem.map(|p| format!("{name}: {p}")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
