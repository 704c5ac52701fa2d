//! The JPEG-LS decoder gives bit-identical counts to CharLS on every frame of the
//! T1030sc `.csq`. `tests/data/jpegls_charls_reference.json` holds, per frame, the
//! SHA-256 of the counts CharLS 2.4.5 decoded (the decoder used before `pure_jpegls`)
//! and a few spot values; its `about` field says how it was made.

use chitti_common::flir::{FlirFile, ParseLimits, RawEncoding};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn reference() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/jpegls_charls_reference.json");
    let text = std::fs::read_to_string(path).expect("jpegls_charls_reference.json");
    serde_json::from_str(&text).expect("valid json")
}

/// SHA-256 of the counts as little-endian bytes, row-major.
fn counts_sha256(counts: &[u16]) -> String {
    let mut hasher = Sha256::new();
    for count in counts {
        hasher.update(count.to_le_bytes());
    }
    hex::encode(hasher.finalize())
}

#[test]
fn every_csq_frame_decodes_to_the_charls_counts() {
    let reference = reference();
    let fixture = reference["fixture"].as_str().expect("fixture");
    let want_frames = reference["frames"].as_array().expect("frames");
    assert_eq!(want_frames.len(), 8, "the reference covers all 8 frames");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(fixture);
    let file = std::fs::File::open(&path).expect("the .csq fixture");
    let mut flir = FlirFile::open(file, ParseLimits::default()).expect(fixture);
    assert_eq!(flir.frame_count().expect(fixture), want_frames.len());

    let mut failures = Vec::new();
    for (frame, want) in flir.frames().zip(want_frames) {
        let frame = frame.expect("frame decodes");
        let index = frame.index;
        assert_eq!(
            want["index"].as_u64(),
            Some(index as u64),
            "frames in order"
        );
        assert_eq!(frame.raw_encoding, RawEncoding::JpegLs, "frame {index}");
        let size = (frame.raw.width(), frame.raw.height());
        let want_size = (
            want["width"].as_u64().unwrap() as u32,
            want["height"].as_u64().unwrap() as u32,
        );
        if size != want_size {
            failures.push(format!("frame {index}: {size:?}, CharLS {want_size:?}"));
            continue;
        }
        let got = counts_sha256(frame.raw.counts());
        let want_hash = want["sha256_counts_le"].as_str().unwrap();
        if got != want_hash {
            failures.push(format!(
                "frame {index}: counts sha256 {got}, CharLS {want_hash}"
            ));
        }
        for spot in want["pixels"].as_array().unwrap() {
            let [x, y, count] = [0, 1, 2].map(|i| spot[i].as_u64().unwrap());
            let got = frame.raw.get(x as u32, y as u32).expect("inside the frame");
            if u64::from(got) != count {
                failures.push(format!(
                    "frame {index}: count at ({x}, {y}) is {got}, CharLS {count}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
