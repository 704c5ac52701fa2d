//! Every real FLIR fixture passes the image-quality gate as quantitative: the gate's
//! defaults must never mark a good camera's frame as a qualitative one. The measured
//! figures are printed (`--nocapture`) to show the margin to each threshold.

use chitti_common::analysis::AnalysisOptions;
use chitti_common::flir::ParseLimits;
use chitti_common::inspection::{inspect_file, InspectionOptions};
use chitti_common::quality::QualityOptions;
use chitti_common::severity::SeverityCatalog;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/flir")
}

#[test]
fn every_flir_fixture_frame_is_quantitative() {
    let options = InspectionOptions {
        table: SeverityCatalog::builtin()
            .get("utility-absolute")
            .unwrap()
            .clone(),
        analysis: AnalysisOptions::default(),
        limits: ParseLimits::default(),
    };
    let defaults = QualityOptions::default();
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("jpg" | "fff" | "seq" | "csq")
            )
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 13, "all 13 fixtures");
    let mut failures = Vec::new();
    let mut least_sharp = f64::INFINITY;
    for path in &names {
        let name = path.file_name().unwrap().to_string_lossy();
        let bytes = std::fs::read(path).unwrap();
        let inspection = inspect_file(&bytes, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        for frame in &inspection.frames {
            let m = &frame.quality.measures;
            println!(
                "{name} frame {}: sharpness {:?}, contrast {:?} °C, saturated {:.5}, out of range {:?}",
                frame.index, m.edge_sharpness, m.contrast_c, m.saturated_fraction, m.out_of_range_fraction
            );
            if let Some(s) = m.edge_sharpness {
                least_sharp = least_sharp.min(s);
            }
            if !frame.quality.quantitative {
                failures.push(format!(
                    "{name} frame {}: {:?}",
                    frame.index, frame.quality.reasons
                ));
            }
            assert!(
                frame.regions.iter().all(|r| !r.severity.qualitative),
                "{name}: a quantitative frame's assessments are not flagged"
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The blur threshold keeps a margin below the softest real fixture.
    assert!(
        least_sharp >= 1.5 * defaults.min_edge_sharpness,
        "least sharp fixture {least_sharp}"
    );
}

fn origin() -> chitti_common::inspection::FindingOrigin {
    let now = chrono::Utc::now();
    chitti_common::inspection::FindingOrigin {
        site: "s".into(),
        gateway: "g".into(),
        camera: "c".into(),
        asset: None,
        preset: None,
        source: chitti_common::finding::FindingSource::Upload,
        captured_at: now.fixed_offset(),
        observed_at: now,
        model: None,
    }
}

#[test]
fn a_frame_that_fails_the_gate_keeps_its_findings_flagged_qualitative() {
    // A gate stricter than any real optics: the T640 frame reads as blurred.
    let options = InspectionOptions {
        table: SeverityCatalog::builtin()
            .get("utility-absolute")
            .unwrap()
            .clone(),
        analysis: AnalysisOptions {
            quality: QualityOptions {
                min_edge_sharpness: 5.0,
                ..QualityOptions::default()
            },
            ..AnalysisOptions::default()
        },
        limits: ParseLimits::default(),
    };
    let bytes = std::fs::read(fixtures().join("flir_t640_png.jpg")).unwrap();
    let inspection = inspect_file(&bytes, &options).unwrap();
    let frame = &inspection.frames[0];
    assert!(!frame.quality.quantitative);
    assert!(frame
        .quality
        .has(chitti_common::quality::QualityCode::Blurred));
    assert!(!frame.regions.is_empty(), "the hotspots are still found");
    let findings = frame.still_findings(&origin(), "scope", "sha", None);
    assert_eq!(findings.len(), frame.regions.len());
    for f in &findings {
        assert!(f.severity.qualitative && f.measurement.qualitative);
        assert!(f.severity.level > 0, "the level is kept, as indicative");
        let quality = f
            .quality
            .as_ref()
            .expect("the verdict travels with the finding");
        assert_eq!(
            quality.reasons[0].code,
            chitti_common::quality::QualityCode::Blurred
        );
        // On the wire, and back.
        let json = serde_json::to_string(f).unwrap();
        assert!(json.contains(r#""qualitative":true"#) && json.contains(r#""code":"blurred""#));
        let back: chitti_common::finding::Finding = serde_json::from_str(&json).unwrap();
        assert_eq!(back.quality, f.quality);
        assert!(back.severity.qualitative);
    }
}

#[test]
fn detected_components_add_their_phase_comparisons_after_the_hotspots() {
    use chitti_common::finding::DetectedComponent;
    use chitti_common::geometry::PixelRect;
    use chitti_common::inspection::inspect_file_with;
    let options = InspectionOptions {
        table: SeverityCatalog::builtin()
            .get("neta-ambient")
            .unwrap()
            .clone(),
        analysis: AnalysisOptions::default(),
        limits: ParseLimits::default(),
    };
    let bytes = std::fs::read(fixtures().join("flir_t640_png.jpg")).unwrap();
    let plain = inspect_file(&bytes, &options).unwrap();
    let rect = |x, y| PixelRect { x, y, w: 40, h: 60 };
    let mut detect = |_: &chitti_common::image::TemperatureImage| {
        [rect(100, 200), rect(200, 200), rect(300, 200)]
            .map(|bbox| DetectedComponent {
                class: "bushing".into(),
                confidence: 0.8,
                bbox,
            })
            .to_vec()
    };
    let with = inspect_file_with(&bytes, &options, Some(&mut detect)).unwrap();
    let (plain, with) = (&plain.frames[0], &with.frames[0]);
    assert_eq!(with.components.components.len(), 3);
    assert_eq!(with.components.groups.len(), 1);
    let comparisons = with.components.comparison_regions();
    // The hotspots come first, unchanged; the reportable comparisons follow.
    assert_eq!(with.regions.len(), plain.regions.len() + comparisons.len());
    assert_eq!(with.regions[..plain.regions.len()], plain.regions[..]);
    let findings = with.still_findings(&origin(), "scope", "sha", None);
    for f in &findings[plain.regions.len()..] {
        assert_eq!(f.severity.table, "neta-similar");
        let similar = f.reference.similar.as_ref().expect("names its reference");
        assert!(similar.label.starts_with("bushing #"), "{}", similar.label);
        assert_eq!(f.component.as_ref().unwrap().class, "bushing");
    }
}
