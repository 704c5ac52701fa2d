//! The component detector's pre-processing (`chitti_common::detector_input`) on a real
//! 640×480 FLIR frame (frame 0 of `tests/fixtures/flir/flir_sc660_2frames.seq`, in °C):
//! the unit-range percentiles alone, the fused model input at the two input sizes the
//! shipped model is benchmarked at, and the two-step path `synth` writes training data
//! with (unit image, then letterbox), which the fused path must equal value for value.
//!
//! Run: `cargo bench -p chitti-common --bench detector_input`. Single-threaded.

use chitti_common::detector_input::{model_input, unit_image, unit_range, Letterbox};
use chitti_common::flir::parse_bytes;
use chitti_common::image::TemperatureImage;
use chitti_common::radiometry::{CelsiusLut, ParamOverrides};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

const FIXTURE: &str = "flir_sc660_2frames.seq";

fn frame() -> TemperatureImage {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/flir")
        .join(FIXTURE);
    let frame = parse_bytes(&std::fs::read(path).expect("fixture")).expect("parses");
    let converter = frame.converter(&ParamOverrides::default()).expect("params");
    CelsiusLut::full(&converter).convert(&frame.raw).0
}

fn detector_input(c: &mut Criterion) {
    let image = frame();
    let (lo, hi) = unit_range(image.celsius());
    eprintln!(
        "detector_input bench: {FIXTURE} frame 0, {}x{}, unit range {lo:.2}..{hi:.2} °C",
        image.width(),
        image.height()
    );
    let mut group = c.benchmark_group("detector_input_640x480");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("unit_range", |b| {
        b.iter(|| unit_range(black_box(image.celsius())))
    });
    for (w, h) in [(320, 256), (640, 512)] {
        let letterbox = Letterbox::fit(image.width(), image.height(), w, h);
        group.bench_function(format!("model_input_{w}x{h}"), |b| {
            b.iter(|| model_input(black_box(&image), &letterbox, 1))
        });
        group.bench_function(format!("unit_image_then_letterbox_{w}x{h}"), |b| {
            b.iter(|| letterbox.apply(&unit_image(black_box(&image)), 1))
        });
    }
    group.finish();
}

criterion_group!(benches, detector_input);
criterion_main!(benches);
