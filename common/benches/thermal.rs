//! Thermal core benchmarks: file bytes → °C matrix for every FLIR fixture, the PNG codec
//! alone (the floor for PNG-raw files), a 640×480 stream frame → °C + hotspots, and the
//! cost of building the raw → °C lookup tables.
//!
//! Run with `common/benches/run-benches.sh` (prints a summary against the targets) or
//! `cargo bench -p chitti-common --bench thermal`. Everything is single-threaded.
//!
//! Inputs are `tests/fixtures/flir/*` (real camera files, see its MANIFEST.md), read
//! into memory once, outside the timed loops: file IO is not measured.

use chitti_common::analysis::{analyze_frame, AnalysisOptions};
use chitti_common::flir::{parse_bytes, raw_data_payload, FlirFrame, RawEncoding};
use chitti_common::hotspot::{SegmentOptions, Segmenter};
use chitti_common::image::RawFrame;
use chitti_common::radiometry::{frame_to_celsius, CelsiusLut, ParamOverrides, RawToCelsius};
use chitti_common::severity::SeverityCatalog;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

/// The 640×480 raw-LE frame the stream benchmarks use (frame 0 of a FLIR SC660 `.seq`).
const STREAM_FIXTURE: &str = "flir_sc660_2frames.seq";

/// Hotspot threshold for the stream frame: the SC660 scene spans 18.6–38.3 °C; at
/// 25 °C five regions of 10–7 179 px qualify and 13 specks fall under the minimum area
/// (the setup prints the counts).
const STREAM_THRESHOLD_C: f64 = 25.0;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/flir")
}

/// Every FLIR fixture (name, bytes), sorted by name.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/flir exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("jpg" | "fff" | "seq" | "csq")
            )
        })
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).expect("readable fixture");
            (name, bytes)
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 13, "the 13 FLIR fixtures");
    files
}

fn first_frame(name: &str, bytes: &[u8]) -> FlirFrame {
    parse_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// bytes → `parse_bytes` → `temperatures()`, the whole single-file path. For a PNG-raw
/// fixture, `png_decode_only/<fixture>` (the `png` crate decoding the embedded PNG
/// alone) is measured right before it, so the ratio of the two compares runs made
/// under the same machine load. Then the two halves, `parse_only` and `celsius_only`,
/// to see which dominates.
fn parse_to_celsius(c: &mut Criterion) {
    let files = fixtures();
    let overrides = ParamOverrides::default();
    for (name, bytes) in &files {
        let frame = first_frame(name, bytes);
        if frame.raw_encoding == RawEncoding::Png {
            // Extracted once, outside the timed loop, from the FFF stream reassembled
            // out of the `APP1` chunks: exactly the bytes the parser decodes.
            let payload = raw_data_payload(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut group = c.benchmark_group("png_decode_only");
            group.bench_with_input(BenchmarkId::from_parameter(name), &payload, |b, payload| {
                b.iter(|| decode_png(black_box(payload)))
            });
            group.finish();
        }
        let mut group = c.benchmark_group("parse_to_celsius");
        group.throughput(Throughput::Elements(frame.raw.counts().len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), bytes, |b, bytes| {
            b.iter(|| {
                let frame = parse_bytes(black_box(bytes)).expect("parses");
                frame.temperatures(&overrides).expect("converts")
            })
        });
        group.finish();
    }

    let mut group = c.benchmark_group("parse_only");
    for (name, bytes) in &files {
        group.bench_with_input(BenchmarkId::from_parameter(name), bytes, |b, bytes| {
            b.iter(|| parse_bytes(black_box(bytes)).expect("parses"))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("celsius_only");
    for (name, bytes) in &files {
        let frame = first_frame(name, bytes);
        group.bench_with_input(BenchmarkId::from_parameter(name), &frame, |b, frame| {
            b.iter(|| black_box(frame).temperatures(&overrides).expect("converts"))
        });
    }
    group.finish();
}

/// A parsed frame → `analyze_frame` with the default table and options: °C matrix,
/// statistics, hotspots at the table's default threshold and their severity — what
/// `chitti-agent inspect` does after parsing.
fn analyze(c: &mut Criterion) {
    let catalog = SeverityCatalog::builtin();
    let table = catalog.get("utility-absolute").expect("built-in table");
    let options = AnalysisOptions::default();
    let mut group = c.benchmark_group("analyze_frame");
    for (name, bytes) in fixtures() {
        let frame = first_frame(&name, &bytes);
        group.bench_with_input(BenchmarkId::from_parameter(&name), &frame, |b, frame| {
            b.iter(|| analyze_frame(black_box(frame), table, &options).expect("analyses"))
        });
    }
    group.finish();
}

/// Decodes a 16-bit greyscale PNG into a fresh buffer, as the parser does, minus the
/// checks and the byte swap to `u16`.
fn decode_png(payload: &[u8]) -> Vec<u8> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(payload));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0u8; reader.output_buffer_size().expect("sane size")];
    reader.next_frame(&mut buf).expect("png data");
    buf
}

/// Frame 0 of the SC660 sequence: 640×480 raw counts and its converter.
fn stream_frame() -> (RawFrame, RawToCelsius) {
    let bytes = std::fs::read(fixtures_dir().join(STREAM_FIXTURE)).expect("fixture");
    let frame = first_frame(STREAM_FIXTURE, &bytes);
    assert_eq!((frame.raw.width(), frame.raw.height()), (640, 480));
    let converter = frame
        .converter(&ParamOverrides::default())
        .expect("valid params");
    (frame.raw, converter)
}

/// A camera stream at 30 Hz: one 640×480 frame of raw counts → °C matrix + hotspots.
/// `640x480` uses the full 65 536-entry table a stream builds once per parameter set;
/// `640x480_range_lut` builds a table over the frame's raw range for every frame.
fn raw_to_celsius_and_hotspots(c: &mut Criterion) {
    let (raw, converter) = stream_frame();
    let options = SegmentOptions {
        threshold_c: STREAM_THRESHOLD_C,
        ..SegmentOptions::default()
    };
    let segmenter = Segmenter::new(&converter, options);
    let full = CelsiusLut::full(&converter);
    let found = segmenter.segment(&raw, &full, None);
    eprintln!(
        "stream frame: {STREAM_FIXTURE} frame 0, {}x{}, threshold {STREAM_THRESHOLD_C} °C \
         (raw {:?}) → {} hotspot(s), {} below min area",
        raw.width(),
        raw.height(),
        segmenter.threshold_raw(),
        found.regions.len(),
        found.below_min_area
    );

    let mut group = c.benchmark_group("raw_to_celsius_and_hotspots");
    group.throughput(Throughput::Elements(raw.counts().len() as u64));
    group.bench_function("640x480", |b| {
        b.iter(|| {
            let frame = black_box(&raw);
            let (image, report) = full.convert(frame);
            let hotspots = segmenter.segment(frame, &full, None);
            (image, report, hotspots)
        })
    });
    group.bench_function("640x480_range_lut", |b| {
        b.iter(|| {
            let frame = black_box(&raw);
            let (lo, hi) = frame.min_max();
            let lut = CelsiusLut::for_range(&converter, lo, hi);
            let (image, report) = lut.convert(frame);
            let hotspots = segmenter.segment(frame, &lut, None);
            (image, report, hotspots)
        })
    });
    group.finish();

    // The pieces, to see where the time goes.
    let mut group = c.benchmark_group("stream_parts");
    group.bench_function("convert_full_lut", |b| {
        b.iter(|| full.convert(black_box(&raw)))
    });
    group.bench_function("frame_to_celsius", |b| {
        b.iter(|| frame_to_celsius(&converter, black_box(&raw)))
    });
    group.bench_function("segment", |b| {
        b.iter(|| segmenter.segment(black_box(&raw), &full, None))
    });
    group.bench_function("min_max", |b| b.iter(|| black_box(&raw).min_max()));
    group.finish();
}

/// Building the raw → °C tables: the full 65 536 entries, and the SC660 frame's range.
fn lut_build(c: &mut Criterion) {
    let (raw, converter) = stream_frame();
    let (lo, hi) = raw.min_max();
    eprintln!(
        "lut_build/range: raw {lo}..={hi} ({} entries)",
        u32::from(hi - lo) + 1
    );
    let mut group = c.benchmark_group("lut_build");
    group.bench_function("full", |b| {
        b.iter(|| CelsiusLut::full(black_box(&converter)))
    });
    group.bench_function("range", |b| {
        b.iter(|| CelsiusLut::for_range(black_box(&converter), lo, hi))
    });
    group.finish();
}

fn config() -> Criterion {
    // Shorter than criterion's defaults (3 s + 5 s per benchmark) so the ~50 benchmarks
    // finish in a few minutes; override on the command line if needed.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = parse_to_celsius, analyze, raw_to_celsius_and_hotspots, lut_build
}
criterion_main!(benches);
