//! A model's self-test: its manifest's reference frames (scenes of the agent's own
//! generator) run through the detector and compared with the detections the manifest
//! expects (`chitti_common::model_manifest`). The hub runs it when a model is uploaded;
//! every gateway runs it again, with its own detector settings and runtime, before it
//! switches to a model — this code in both places.

use super::{DetectorSettings, OnnxDetector};
use chitti_common::image::TemperatureImage;
use chitti_common::model_manifest::{
    ExpectedDetection, FoundDetection, FrameResult, ModelManifest, ReferenceFrame, SyntheticScene,
};
use chitti_common::scene;

/// The frame a reference scene describes.
pub fn reference_image(scene: &SyntheticScene) -> Result<TemperatureImage, String> {
    scene::generate(scene.seed, scene.index, scene.width, scene.height)
        .map(|f| f.temperature)
        .map_err(|e| {
            format!(
                "reference scene seed {} index {}: {e}",
                scene.seed, scene.index
            )
        })
}

/// Runs `detector` on every reference frame of `manifest`, in order.
pub fn detect_references(
    detector: &mut OnnxDetector,
    manifest: &ModelManifest,
) -> Result<Vec<Vec<FoundDetection>>, String> {
    manifest
        .reference_frames
        .iter()
        .map(|frame| {
            let image = reference_image(&frame.synthetic)?;
            let found = detector
                .detect_frame(&image)
                .map_err(|e| format!("reference frame {}: {e}", frame.name))?;
            Ok(found
                .into_iter()
                .map(|d| FoundDetection {
                    class: d.class,
                    bbox: d.bbox,
                })
                .collect())
        })
        .collect()
}

/// Loads the model of `settings` and runs the self-test of `manifest` on it: the
/// per-frame results, or why it failed (the model does not load, its classes differ
/// from the manifest's, or it does not find what the manifest expects). Blocking work.
pub fn self_test(
    settings: &DetectorSettings,
    manifest: &ModelManifest,
) -> Result<Vec<FrameResult>, String> {
    let mut detector = OnnxDetector::load(settings).map_err(|e| e.to_string())?;
    check_classes(&detector, manifest)?;
    let found = detect_references(&mut detector, manifest)?;
    manifest.judge(&found)
}

fn check_classes(detector: &OnnxDetector, manifest: &ModelManifest) -> Result<(), String> {
    let names = detector.class_names().in_order();
    if !names.is_empty() && names != manifest.classes {
        return Err(format!(
            "the model's classes {names:?} are not the manifest's {:?}",
            manifest.classes
        ));
    }
    Ok(())
}

/// Reference frames for a model: each scene with what `detector` finds on it (the
/// `reference_frames` of a manifest; `chitti-agent model reference` prints them).
pub fn reference_frames(
    detector: &mut OnnxDetector,
    scenes: &[SyntheticScene],
) -> Result<Vec<ReferenceFrame>, String> {
    scenes
        .iter()
        .map(|s| {
            let image = reference_image(s)?;
            let found = detector.detect_frame(&image).map_err(|e| e.to_string())?;
            Ok(ReferenceFrame {
                name: format!("seed {} index {} {}x{}", s.seed, s.index, s.width, s.height),
                synthetic: *s,
                expect: found
                    .into_iter()
                    .map(|d| ExpectedDetection {
                        class: d.class,
                        bbox: d.bbox,
                    })
                    .collect(),
            })
        })
        .collect()
}

/// The manifest of the model file `model` (`chitti-agent model-manifest`): its sha256,
/// classes and input from the file, `frames` reference frames of scene `seed` at
/// 640×480 with what the model finds on them (default detector settings).
pub fn write_manifest(
    model: &std::path::Path,
    library: Option<std::path::PathBuf>,
    name: Option<String>,
    version: Option<String>,
    seed: u64,
    frames: u64,
) -> Result<ModelManifest, String> {
    use sha2::Digest;
    let bytes =
        std::fs::read(model).map_err(|e| format!("cannot read {}: {e}", model.display()))?;
    let mut settings = DetectorSettings::new(model);
    settings.library = library;
    let mut detector = OnnxDetector::load(&settings).map_err(|e| e.to_string())?;
    let scenes: Vec<SyntheticScene> = (0..frames)
        .map(|index| SyntheticScene {
            seed,
            index,
            width: 640,
            height: 480,
        })
        .collect();
    let reference_frames = reference_frames(&mut detector, &scenes)?;
    let identity = detector.identity().clone();
    let (w, h) = detector.input_size();
    let manifest = ModelManifest {
        name: name.unwrap_or(identity.name),
        version: version.unwrap_or(identity.version),
        classes: detector.class_names().in_order(),
        input: [w, h],
        normalisation: "chitti_common::detector_input".into(),
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        min_agent_version: env!("CARGO_PKG_VERSION").into(),
        reference_frames,
        tolerance: Default::default(),
    };
    manifest.validate().map_err(|p| p.join("; "))?;
    Ok(manifest)
}
