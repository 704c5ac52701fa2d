//! Component detector benchmarks (criterion): per stage — pre-processing (unit range +
//! letterbox of a 640×480 °C frame of the simulated `components` scene), inference (ONNX
//! Runtime), decode + NMS — and end
//! to end, at 320×256 and 640×512 model inputs; and the 30 Hz analysis path with the
//! background detector attached, against none.
//!
//! The model is `CHITTI_BENCH_MODEL`, else models/chitti-components-v1/model.int8.onnx
//! when present, else the dynamic-input layout fixture (a graph of a few nodes: its
//! inference figure is ONNX Runtime's per-call overhead, not a detector's cost). A
//! fixed-size model runs only at its own size. ONNX Runtime is `ORT_DYLIB_PATH`
//! (models/fetch-onnxruntime.sh); threads `CHITTI_BENCH_THREADS` (default 2).
//!
//! Each input tensor and the °C frame are also written to `target/bench-detector/` so
//! that models/bench/bench_python_ort.py runs Python onnxruntime on exactly the same
//! input (and pre-processes the same frame with numpy);
//! models/bench/run.sh runs both and prints the comparison.
//!
//! Run: `cargo bench -p chitti-agent --bench detector`

mod support;

use chitti_agent::analysis::{CameraAnalyzer, Detector, NoDetector};
use chitti_agent::detector::{BackgroundDetector, DetectorError, DetectorSettings, OnnxDetector};
use chitti_agent::sources::simulated::SceneKind;
use chitti_agent::sources::SourceFrame;
use chitti_common::image::TemperatureImage;
use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SIZES: [(u32, u32); 2] = [(320, 256), (640, 512)];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CHITTI_BENCH_MODEL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let shipped = root().join("models/chitti-components-v1/model.int8.onnx");
    if shipped.is_file() {
        return shipped;
    }
    root().join("agent/tests/fixtures/onnx/yolov8_3ch_dynamic.onnx")
}

fn threads() -> usize {
    std::env::var("CHITTI_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2)
}

fn library() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .expect("ORT_DYLIB_PATH: export ORT_DYLIB_PATH=$(models/fetch-onnxruntime.sh)")
}

/// A 640×480 °C frame of the simulated camera's `components` scene at scene time 700 s
/// (three bushings drawn by the training generator; phase B's terminal at its peak,
/// phase C open): a frame the model finds components in, so decode and NMS have work.
fn thermal_frame() -> TemperatureImage {
    support::scene(SceneKind::Components)
        .components_frame(700 * 30)
        .temperature
}

fn load(size: (u32, u32)) -> Result<OnnxDetector, DetectorError> {
    let mut s = DetectorSettings::new(model_path());
    s.library = Some(library());
    s.intra_threads = threads();
    s.input_size = Some(size);
    match OnnxDetector::load(&s) {
        Err(DetectorError::UnsupportedModel { reason, .. }) if reason.contains("fixed at") => {
            // A fixed-size model: only its own size.
            s.input_size = None;
            let d = OnnxDetector::load(&s)?;
            if d.input_size() == size {
                Ok(d)
            } else {
                Err(DetectorError::Settings(reason))
            }
        }
        other => other,
    }
}

fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Raw little-endian f32, the layout numpy's `fromfile(dtype="<f4")` reads.
fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes the model input for Python onnxruntime: raw little-endian f32 and its shape.
fn write_input(detector: &OnnxDetector, tensor: &[f32]) {
    let dir = root().join("target/bench-detector");
    std::fs::create_dir_all(&dir).unwrap();
    let (w, h) = detector.input_size();
    std::fs::write(dir.join(format!("input_{w}x{h}.f32")), le_bytes(tensor)).unwrap();
    let meta = serde_json::json!({
        "shape": [1, detector.channels(), h, w],
        "model": model_path(),
        "threads": threads(),
    });
    std::fs::write(dir.join(format!("input_{w}x{h}.json")), meta.to_string()).unwrap();
}

/// Writes the °C frame, so that bench_python_ort.py can pre-process it with numpy.
fn write_frame(image: &TemperatureImage) {
    let dir = root().join("target/bench-detector");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("frame.f32"), le_bytes(image.celsius())).unwrap();
    let meta = serde_json::json!({ "width": image.width(), "height": image.height() });
    std::fs::write(dir.join("frame.json"), meta.to_string()).unwrap();
}

fn stages(c: &mut Criterion) {
    let image = thermal_frame();
    write_frame(&image);
    eprintln!(
        "detector bench: model {}, {} thread(s), frame {}x{}, rss before load {:.0} MB",
        model_path().display(),
        threads(),
        image.width(),
        image.height(),
        rss_mb().unwrap_or(f64::NAN)
    );
    for size in SIZES {
        let mut detector = match load(size) {
            Ok(d) => d,
            Err(err) => {
                eprintln!("detector bench: {}x{} skipped: {err}", size.0, size.1);
                continue;
            }
        };
        eprintln!(
            "detector bench: {}x{}: layout {:?}, rss with the model loaded {:.0} MB",
            size.0,
            size.1,
            detector.layout(),
            rss_mb().unwrap_or(f64::NAN)
        );
        let input = detector.prepare(&image);
        write_input(&detector, &input.tensor);
        let output = detector.infer(&input).unwrap();
        let found = detector.decode(&output, &input).unwrap();
        eprintln!("detector bench: {} detection(s) on the frame", found.len());

        let mut group = c.benchmark_group(format!("detector_{}x{}", size.0, size.1));
        group.sample_size(30);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(4));
        group.bench_function("preprocess", |b| b.iter(|| detector.prepare(&image)));
        group.bench_function("inference", |b| b.iter(|| detector.infer(&input).unwrap()));
        group.bench_function("decode_nms", |b| {
            b.iter(|| detector.decode(&output, &input).unwrap())
        });
        group.bench_function("end_to_end", |b| {
            b.iter(|| detector.detect_frame(&image).unwrap())
        });
        group.finish();
    }
}

/// The 30 Hz analysis path with the background detector attached at 5 Hz: what the
/// detector costs the thresholding thread (a frame copy five times a second and a
/// lock), against no detector.
fn analysis_alongside(c: &mut Criterion) {
    let (config, table) = support::config_and_table();
    let scene = support::scene(SceneKind::Substation);
    let frames: Vec<SourceFrame> = (0..30)
        .map(|i| support::source_frame(&scene, 700 * 30 + i))
        .collect();
    let Ok(detector) = load(SIZES[0]).or_else(|_| load(SIZES[1])) else {
        eprintln!("detector bench: no size fits the model; analysis_alongside skipped");
        return;
    };
    let mut group = c.benchmark_group("analysis_640x480");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(4));
    let detectors: [(&str, Box<dyn Detector>); 2] = [
        ("no_detector", Box::new(NoDetector)),
        (
            "background_detector_5hz",
            Box::new(BackgroundDetector::spawn(detector, 5.0, "bench").unwrap()),
        ),
    ];
    for (name, detector) in detectors {
        let mut analyzer = CameraAnalyzer::new(
            &config.analysis,
            &config.camera_context(&config.cameras[0]),
            table.clone(),
            detector,
        );
        let mut i = 0usize;
        group.bench_function(name, |b| {
            b.iter(|| {
                let out = analyzer.process(&frames[i % frames.len()]).unwrap();
                i += 1;
                out.regions
            })
        });
    }
    group.finish();
}

criterion_group!(benches, stages, analysis_alongside);
criterion_main!(benches);
