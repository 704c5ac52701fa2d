//! The simulated camera's `components` scene through the camera analysis with the
//! shipped model (`models/chitti-components-v1/model.int8.onnx`) on the real ONNX
//! Runtime: the stream the agent would analyse, drawn by the same generator the model
//! was trained on. At the peak of the fault cycle (phase B's terminal 75 °C over its
//! body, phase C open) the model finds the three bushings where the generator drew
//! them, phase B is a `neta-similar` finding against a loaded sibling, and the open
//! phase C is the cool exception, never the baseline; in the quiet part of the cycle
//! nothing is compared as faulty.
//!
//! The library comes from `ORT_DYLIB_PATH` (tests/run-all.sh exports it); without it
//! these tests fail on purpose.

mod support;

use chitti_agent::detector::{DetectorSettings, OnnxDetector};
use chitti_common::finding::Finding;
use chitti_common::geometry::PixelRect;
use chrono::Utc;
use std::path::Path;
use support::{ort_library, phase_comparisons, simulated_camera_analysis};

const CONFIG: &str = r#"
version = 1
[identity]
site = "s"
gateway = "g"
[[camera]]
id = "sim-1"
[camera.source]
kind = "simulated"
scene = "components"
width = 640
height = 480
fps = 1.0
speed = 1.0
seed = 11
unpaced = true
[analysis.tracking]
raise_after_frames = 2
clear_after_frames = 4
"#;

fn iou(a: PixelRect, b: [u32; 4]) -> f64 {
    let (ax1, ay1) = (a.x + a.w, a.y + a.h);
    let ix = ax1.min(b[2]).saturating_sub(a.x.max(b[0]));
    let iy = ay1.min(b[3]).saturating_sub(a.y.max(b[1]));
    let inter = f64::from(ix * iy);
    let union = f64::from(a.w * a.h) + f64::from((b[2] - b[0]) * (b[3] - b[1])) - inter;
    inter / union
}

/// Runs scene seconds `seconds` through the analysis with the shipped int8 model;
/// checks on every frame that the three drawn bushings are detected; returns the
/// findings and the generator's boxes of phases A, B, C (`[x0, y0, x1, y1]`).
fn run(seconds: std::ops::Range<u64>) -> (Vec<Finding>, [[u32; 4]; 3]) {
    let mut settings = DetectorSettings::new(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/chitti-components-v1/model.int8.onnx"),
    );
    settings.library = Some(ort_library());
    let detector = OnnxDetector::load(&settings).expect("the shipped model loads");
    let (scene, mut analyzer) = simulated_camera_analysis(CONFIG, Box::new(detector));
    let mut findings = Vec::new();
    let mut drawn = [[0u32; 4]; 3];
    for n in seconds {
        let generated = scene.components_frame(n);
        assert_eq!(
            generated.components.len(),
            3,
            "the scene draws three bushings"
        );
        for (k, c) in generated.components.iter().enumerate() {
            drawn[k] = c.bbox;
        }
        let outcome = analyzer
            .process(&scene.source_frame(n, Utc::now().fixed_offset()))
            .unwrap();
        assert!(outcome.quantitative, "frame {n} passes the quality gate");
        let found = &outcome.components.components;
        for (k, want) in drawn.iter().enumerate() {
            let best = found
                .iter()
                .filter(|c| c.component.class == "bushing")
                .map(|c| iou(c.component.bbox, *want))
                .fold(0.0, f64::max);
            assert!(
                best >= 0.5,
                "frame {n}: phase {k} drawn at {want:?}, best IoU {best:.2} among {:?}",
                found
                    .iter()
                    .map(|c| (&c.component.class, c.component.bbox))
                    .collect::<Vec<_>>()
            );
        }
        findings.extend(outcome.findings.into_iter().map(|f| f.finding));
    }
    (findings, drawn)
}

fn inside(bbox: PixelRect, drawn: [u32; 4]) -> bool {
    iou(bbox, drawn) >= 0.5
}

#[test]
fn at_the_fault_peak_phase_b_is_compared_with_a_loaded_sibling_and_c_is_the_cool_exception() {
    // 700–705 s: B's terminal at its 75 °C peak, C open since 330 s.
    let (findings, [_, b, c]) = run(700..706);
    let (hot, cold) = phase_comparisons(&findings);
    assert_eq!(hot.len(), 1, "one episode for phase B: {hot:#?}");
    let hot = hot[0];
    let component = hot.component.as_ref().expect("it names its component");
    assert!(inside(component.bbox, b), "{component:?} is phase B {b:?}");
    assert!(hot.severity.level >= 3, "{:?}", hot.severity);
    let reference = hot
        .reference
        .similar
        .as_ref()
        .expect("the reference sibling");
    assert_eq!(
        reference.label, "bushing #1 of 3 (left)",
        "the loaded phase A is B's reference, not the open C"
    );
    assert!(hot.hotspot.max_c - reference.celsius > 40.0, "{hot:#?}");

    assert_eq!(cold.len(), 1, "{cold:#?}");
    let open = cold[0].component.as_ref().unwrap();
    assert!(inside(open.bbox, c), "{open:?} is phase C {c:?}");
}

#[test]
fn before_the_fault_nothing_is_compared_as_faulty() {
    // 10–15 s: three loaded, healthy phases.
    let (findings, _) = run(10..16);
    assert!(
        findings
            .iter()
            .all(|f| f.severity.table != "neta-similar" || f.severity.level == 0),
        "{findings:#?}"
    );
}
