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
