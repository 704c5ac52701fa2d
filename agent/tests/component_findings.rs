//! Detection-driven measurement in the camera analysis: a detector's boxes over the
//! simulated substation's three phases become measured components, the phases are
//! compared with each other (`neta-similar`, the reference sibling named), the cold phase is
//! the cool exception, and hotspots outside every box are still reported.

mod support;

use chitti_agent::analysis::{Detection, Detector};
use chitti_agent::sources::simulated::phase_body_rects;
use chitti_common::finding::{Finding, ModelIdentity};
use chitti_common::geometry::PixelRect;
use chitti_common::image::TemperatureImage;
use chrono::Utc;
use support::{phase_comparisons, simulated_camera_analysis};

const CONFIG: &str = r#"
version = 1
[identity]
site = "s"
gateway = "g"
[[camera]]
id = "sim-1"
[camera.source]
kind = "simulated"
width = 160
height = 120
fps = 1.0
speed = 1.0
seed = 7
unpaced = true
[analysis.tracking]
raise_after_frames = 2
clear_after_frames = 4
"#;

/// A detector that finds the same boxes in every frame (the real one is an ONNX model).
struct FixedBoxes(Vec<PixelRect>);

impl Detector for FixedBoxes {
    fn detect(&mut self, _image: &TemperatureImage) -> Vec<Detection> {
        self.0
            .iter()
            .map(|&bbox| Detection {
                class: "bushing".into(),
                confidence: 0.9,
                bbox,
            })
            .collect()
    }
    fn model(&self) -> Option<ModelIdentity> {
        None
    }
}

fn phases() -> [PixelRect; 3] {
    phase_body_rects(160, 120).map(PixelRect::from)
}

/// The findings of scene seconds 700–711: phase B's top connector at its 75 °C peak and
/// phase C open (at ambient), with `boxes` detected in every frame.
fn findings(boxes: Vec<PixelRect>) -> Vec<Finding> {
    let (scene, mut analyzer) = simulated_camera_analysis(CONFIG, Box::new(FixedBoxes(boxes)));
    let mut out = Vec::new();
    for n in 700..712 {
        let outcome = analyzer
            .process(&scene.source_frame(n, Utc::now().fixed_offset()))
            .unwrap();
        assert!(
            outcome.quantitative,
            "the simulated scene is sharp and in range"
        );
        out.extend(outcome.findings.into_iter().map(|f| f.finding));
    }
    out
}

#[test]
fn the_hot_phase_is_a_neta_similar_finding_naming_its_reference_and_the_cold_one_a_cool_exception()
{
    let [a, b, c] = phases();
    let all = findings(vec![a, b, c]);
    let (hot, cold) = phase_comparisons(&all);
    assert_eq!(hot.len(), 1, "one episode for the hot phase: {hot:#?}");
    let hot = hot[0];
    assert_eq!(hot.severity.level, 3, "{hot:#?}");
    assert_eq!(hot.severity.level_name, "major discrepancy");
    let component = hot
        .component
        .as_ref()
        .expect("the finding names its component");
    assert_eq!((component.class.as_str(), component.bbox), ("bushing", b));
    let reference = hot
        .reference
        .similar
        .as_ref()
        .expect("the reference sibling");
    assert_eq!(reference.label, "bushing #1 of 3 (left)");
    assert!(
        hot.hotspot.max_c - reference.celsius > 15.0,
        "ΔT {} over {}",
        hot.hotspot.max_c,
        reference.celsius
    );

    assert_eq!(cold.len(), 1, "{cold:#?}");
    assert_eq!(cold[0].component.as_ref().unwrap().bbox, c);
    assert_eq!(
        cold[0].reference.similar.as_ref().unwrap().label,
        "bushing #1 of 3 (left)"
    );
    assert!(all
        .iter()
        .all(|f| !f.measurement.qualitative && f.quality.is_none()));

    // The connector is still a thresholded hotspot on the camera's table, inside phase B.
    let hotspot = all
        .iter()
        .find(|f| f.severity.table != "neta-similar")
        .expect("the connector hotspot");
    assert_eq!(hotspot.component.as_ref().map(|c| c.bbox), Some(b));
}

#[test]
fn a_hotspot_outside_every_component_is_still_reported() {
    // The detector misses phase B: its connector is reported without a component. A and
    // C alone, half the frame apart, are too far apart to be neighbouring phases.
    let [a, _, c] = phases();
    let all = findings(vec![a, c]);
    let outside = all
        .iter()
        .find(|f| f.severity.table != "neta-similar" && f.severity.level > 0)
        .expect("the connector hotspot");
    assert_eq!(outside.component, None);
    assert!(all.iter().all(|f| f.severity.table != "neta-similar"));
}

#[test]
fn without_a_detector_nothing_is_compared() {
    let all = findings(Vec::new());
    assert!(!all.is_empty(), "hotspots on thresholds alone");
    assert!(all
        .iter()
        .all(|f| f.severity.table != "neta-similar" && f.component.is_none()));
}
