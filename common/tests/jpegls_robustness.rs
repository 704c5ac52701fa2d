//! Broken JPEG-LS streams reach the decoder and come back as `Ok` or a `FlirError`:
//! never a panic, never a hang, never more heap than a frame needs.
//!
//! The input is the first frame of the T1030sc `.csq` (a valid one-frame `.csq`, its
//! 1024×768 raw counts a 209 KB near-lossless JPEG-LS stream). Its RawData payload is
//! edited in place, so the FFF structures stay intact and every case is handed to
//! `decode_jpeg_ls`:
//! - truncated: the stream cut at every header byte and at evenly spaced points of the
//!   scan, an end-of-image marker put back after the cut (without one the stream is
//!   rejected before decoding, also checked) and zeros up to the record's end;
//! - bit-flipped: one to four bits flipped at positions from a seeded generator, a
//!   quarter of the cases in the marker segments before the scan;
//! - a scan of random bytes behind the intact header. Without the profile override in
//!   the workspace `Cargo.toml` these make `pure_jpegls` overflow its error sums and
//!   panic in a debug build.
//!
//! `common/tests/corruption.rs` truncates and flips whole files (all formats); this
//! file concentrates the cases on the JPEG-LS decoder.

mod support;

use chitti_common::flir::{FlirError, FlirFile, ParseLimits};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{panic_message, parse_everything, peak_heap, Outcome};

/// The most heap one case may hold at once. The intact frame needs about 10 MiB (the
/// file, the counts, the °C matrix).
const PEAK_HEAP_LIMIT: usize = 64 << 20;

/// The slowest a case may be. The intact frame decodes in ~0.3 s in a debug build on
/// a shared 2-core machine; a decoder that loops or backtracks shows up far above.
const CASE_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Evenly spaced cuts over the scan.
const SCAN_CUTS: usize = 120;

/// Bit-flip cases (deterministic: the generator is seeded).
const FLIPS: usize = 300;

/// Random-scan cases.
const RANDOM_SCANS: usize = 20;

/// The first frame of the `.csq` and where its JPEG-LS stream lies in it.
struct OneFrameCsq {
    bytes: Vec<u8>,
    /// The RawData payload: the stream and its zero padding.
    payload: std::ops::Range<usize>,
    /// Length of the stream up to and including its end-of-image marker.
    stream_len: usize,
    /// Length of the marker segments before the entropy-coded scan.
    header_len: usize,
}

fn one_frame_csq() -> OneFrameCsq {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/flir/flir_t1030sc_8frames_jpegls.csq");
    let all = std::fs::read(path).expect("the .csq fixture");
    let mut file = FlirFile::open(std::io::Cursor::new(&all), ParseLimits::default()).unwrap();
    let frame_1 = file.frame(1).expect("frame 1").offset as usize;
    let bytes = all[..frame_1].to_vec();
    let payload = chitti_common::flir::raw_data_payload(&bytes).expect("raw data payload");
    let magic = [0xFF, 0xD8, 0xFF, 0xF7];
    let start = bytes
        .windows(4)
        .position(|w| w == magic)
        .expect("a JPEG-LS stream");
    assert_eq!(
        &bytes[start..start + payload.len()],
        &payload[..],
        "the payload lies in the file as is"
    );
    let stream_len = payload.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert_eq!(&payload[stream_len - 2..stream_len], [0xFF, 0xD9]);
    // SOI, then marker segments up to and including SOS.
    let mut at = 2;
    loop {
        let len = usize::from(u16::from_be_bytes([payload[at + 2], payload[at + 3]]));
        let code = payload[at + 1];
        at += 2 + len;
        if code == 0xDA {
            break;
        }
    }
    OneFrameCsq {
        payload: start..start + payload.len(),
        bytes,
        stream_len,
        header_len: at,
    }
}

impl OneFrameCsq {
    /// The file with its payload replaced by `stream` and zeros up to the record's end.
    fn with_stream(&self, stream: &[u8]) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        let payload = &mut bytes[self.payload.clone()];
        payload.fill(0);
        payload[..stream.len()].copy_from_slice(stream);
        bytes
    }

    fn stream(&self) -> &[u8] {
        &self.bytes[self.payload.start..self.payload.start + self.stream_len]
    }
}

/// What one case came to.
struct Case {
    /// The decoded frame's error, if any.
    error: Option<String>,
    elapsed: Duration,
}

/// Parses `bytes` (decoding the frame and converting it to °C); `Err` when the parse
/// panicked, broke the API contract, held too much heap or took too long.
fn run_case(bytes: &[u8]) -> Result<Case, String> {
    let started = Instant::now();
    let (caught, peak) =
        peak_heap::measure(|| catch_unwind(AssertUnwindSafe(|| parse_everything(bytes, |_| true))));
    let elapsed = started.elapsed();
    let outcome = match caught {
        Err(payload) => return Err(format!("panicked: {}", panic_message(payload.as_ref()))),
        Ok(Err(contract)) => return Err(contract),
        Ok(Ok(outcome)) => outcome,
    };
    if peak > PEAK_HEAP_LIMIT {
        return Err(format!("held {} MiB of heap at once", peak >> 20));
    }
    if elapsed > CASE_TIME_LIMIT {
        return Err(format!("took {elapsed:?}"));
    }
    if let Outcome::Rejected(e) = &outcome {
        return Err(format!("the file itself was rejected: {e}"));
    }
    Ok(Case {
        error: outcome.first_error().map(FlirError::to_string),
        elapsed,
    })
}

#[test]
fn the_intact_frame_decodes() {
    let csq = one_frame_csq();
    let case = run_case(&csq.with_stream(csq.stream())).expect("intact");
    assert_eq!(case.error, None);
}

#[test]
fn truncated_streams_are_errors() {
    let csq = one_frame_csq();
    let stream = csq.stream();
    let scan = csq.header_len..csq.stream_len - 2;
    // From the JPEG-LS magic on (a shorter payload is no longer a JPEG-LS stream).
    let mut cuts: Vec<usize> = (4..=csq.header_len).collect();
    cuts.extend((0..SCAN_CUTS).map(|k| scan.start + k * scan.len() / SCAN_CUTS));
    cuts.extend(scan.end - 8..scan.end);
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for &cut in &cuts {
        // With the end-of-image marker put back the decoder sees the cut scan; without
        // it the stream is rejected before decoding.
        let mut resealed = stream[..cut].to_vec();
        resealed.extend([0xFF, 0xD9]);
        for (what, cut_stream) in [("resealed", &resealed[..]), ("bare", &stream[..cut])] {
            match run_case(&csq.with_stream(cut_stream)) {
                Err(broken) => failures.push(format!("cut at {cut} ({what}): {broken}")),
                Ok(case) => {
                    slowest = slowest.max(case.elapsed);
                    match case.error {
                        None => failures.push(format!("cut at {cut} ({what}): decoded")),
                        Some(e) if !e.contains("jpeg-ls") => {
                            failures.push(format!("cut at {cut} ({what}): {e}"))
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{} cuts, each resealed and bare, all errors; slowest {slowest:?}",
        cuts.len()
    );
}

/// Knuth's MMIX linear congruential generator: deterministic, no dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[test]
fn bit_flipped_streams_decode_or_fail_cleanly() {
    let csq = one_frame_csq();
    let stream = csq.stream();
    let mut rng = Lcg(0x15_c5a1_f00d);
    let (mut decoded, mut rejected) = (0, 0);
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for case in 0..FLIPS {
        let mut flipped = stream.to_vec();
        let mut flips = Vec::new();
        for _ in 0..=rng.below(4) {
            let at = if case % 4 == 0 {
                rng.below(csq.header_len)
            } else {
                rng.below(stream.len())
            };
            let bit = rng.below(8);
            flipped[at] ^= 1 << bit;
            flips.push((at, bit));
        }
        match run_case(&csq.with_stream(&flipped)) {
            Err(broken) => failures.push(format!("flips (byte, bit) {flips:?}: {broken}")),
            Ok(case) => {
                slowest = slowest.max(case.elapsed);
                match case.error {
                    None => decoded += 1,
                    Some(_) => rejected += 1,
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(rejected > 0, "no flip was detected at all");
    eprintln!("{FLIPS} cases: {decoded} decoded, {rejected} rejected; slowest {slowest:?}");
}

#[test]
fn random_scans_fail_cleanly() {
    let csq = one_frame_csq();
    let stream = csq.stream();
    let mut rng = Lcg(0x0c5a_5ca7);
    let mut failures = Vec::new();
    for case in 0..RANDOM_SCANS {
        let mut random = stream.to_vec();
        // Below 0x80, so that no byte pair reads as a marker.
        for b in &mut random[csq.header_len..stream.len() - 2] {
            *b = rng.below(0x80) as u8;
        }
        match run_case(&csq.with_stream(&random)) {
            Err(broken) => failures.push(format!("case {case}: {broken}")),
            Ok(c) if c.error.is_none() => failures.push(format!("case {case}: decoded")),
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
