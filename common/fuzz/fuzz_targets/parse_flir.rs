//! Arbitrary bytes through the FLIR parser, the way the agent and the hub call it:
//! open, count the frames, decode the first few and convert them to °C.
//!
//! Any panic, allocation over libFuzzer's `-malloc_limit_mb`, or input slower than
//! `-timeout` is a bug in the parser: its contract is a typed `FlirError`.
#![no_main]

use chitti_common::flir::{FlirError, FlirFile, ParseLimits};
use chitti_common::radiometry::ParamOverrides;
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

/// Frames decoded per input: enough to exercise the multi-frame walk, few enough to
/// keep executions fast.
const MAX_FRAMES: usize = 3;

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = FlirFile::open(Cursor::new(data), ParseLimits::default()) else {
        return;
    };
    let _ = file.exif_make_model();
    let count = file.frame_count();
    for frame in file.frames().take(MAX_FRAMES).flatten() {
        let _ = frame.temperatures(&ParamOverrides::default());
    }
    if let Ok(count) = count {
        let past_end = file.frame(count);
        assert!(
            matches!(past_end, Err(FlirError::NoSuchFrame { .. })),
            "frame({count}) of a {count}-frame file: {:?}",
            past_end.map(|f| f.index)
        );
    }
});
