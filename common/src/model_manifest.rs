//! A detection model's manifest (issue #19): what an admin uploads beside the `.onnx`
//! file, what the hub checks and signs, and what every gateway checks again before the
//! model may run — the file's sha256, its classes and input, the lowest agent version
//! that runs it, and **reference frames with the detections expected on them**: the
//! self-test both the hub (at upload) and each gateway (before switching, with its own
//! detector settings) run.
//!
//! Reference frames are scenes of the agent's own generator (`chitti-agent synth`: a
//! seed, an index and a size give the same frame on every machine), so a manifest
//! carries no images; `chitti-agent model reference` writes the `reference_frames` of a
//! model from what it detects.
//!
//! Pure: parsing, validation, version order and the comparison of detections.

use crate::geometry::PixelRect;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Longest manifest accepted, bytes.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// Most reference frames in a manifest (each is generated and run at upload and on
/// every gateway).
pub const MAX_REFERENCE_FRAMES: usize = 16;

/// A model's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// Model name (`chitti-components`): versions of one name replace each other.
    pub name: String,
    /// Version, `MAJOR.MINOR.PATCH` (compared numerically; a rollout to a lower one
    /// is a downgrade).
    pub version: String,
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// The model input: `[width, height]` it was trained at.
    pub input: [u32; 2],
    /// How frames become the input (free text; the runtime's own mapping is
    /// `chitti_common::detector_input`).
    #[serde(default)]
    pub normalisation: String,
    /// SHA-256 of the `.onnx` file, lowercase hex.
    pub sha256: String,
    /// Lowest agent version that runs it (`MAJOR.MINOR.PATCH`).
    #[serde(default = "default_min_agent")]
    pub min_agent_version: String,
    /// The self-test.
    pub reference_frames: Vec<ReferenceFrame>,
    /// How close the detections must come to the expected ones.
    #[serde(default)]
    pub tolerance: Tolerance,
}

fn default_min_agent() -> String {
    "0.1.0".into()
}

/// One reference frame: a generated scene and what the model must find on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReferenceFrame {
    /// A name for messages.
    pub name: String,
    /// The scene: `chitti-agent synth`'s seed, the frame index and the size.
    pub synthetic: SyntheticScene,
    /// The detections expected (class and box in frame pixels).
    pub expect: Vec<ExpectedDetection>,
}

/// A frame of the agent's scene generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SyntheticScene {
    /// Generator seed.
    pub seed: u64,
    /// Frame index within the seed's sequence.
    #[serde(default)]
    pub index: u64,
    /// Frame width, pixels.
    pub width: u32,
    /// Frame height, pixels.
    pub height: u32,
}

/// A detection the model must make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExpectedDetection {
    /// Class name (one of the manifest's classes).
    pub class: String,
    /// Box in frame pixels, `[x, y, w, h]`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::finding::openapi::pixel_rect))]
    pub bbox: PixelRect,
}

/// How the self-test compares.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// An expected detection is found by one of its class overlapping it at least this
    /// much (intersection over union).
    #[serde(default = "default_iou")]
    pub iou: f64,
    /// Share of the expected detections that must be found, 0..1.
    #[serde(default = "default_min_recall")]
    pub min_recall: f64,
}

fn default_iou() -> f64 {
    0.5
}

fn default_min_recall() -> f64 {
    0.9
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            iou: default_iou(),
            min_recall: default_min_recall(),
        }
    }
}

/// A detection the model made on a reference frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundDetection {
    /// Class name.
    pub class: String,
    /// Box in frame pixels.
    pub bbox: PixelRect,
}

/// How one reference frame went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FrameResult {
    /// The frame's name.
    pub name: String,
    /// Expected detections.
    pub expected: usize,
    /// Of those, found.
    pub matched: usize,
    /// Detections made that match nothing expected.
    pub extra: usize,
}

impl ModelManifest {
    /// Parses and validates a manifest: every problem, one `field: problem` line each.
    pub fn parse(json: &[u8]) -> Result<Self, Vec<String>> {
        if json.len() > MAX_MANIFEST_BYTES {
            return Err(vec![format!(
                "manifest: {} bytes, at most {MAX_MANIFEST_BYTES}",
                json.len()
            )]);
        }
        let manifest: Self = serde_json::from_slice(json)
            .map_err(|e| vec![format!("manifest: not a model manifest: {e}")])?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Every problem of an already parsed manifest.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut p = Vec::new();
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !id_ok(&self.name) {
            p.push(format!(
                "name: {:?} must be 1-64 letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        if Version::parse(&self.version).is_none() {
            p.push(format!(
                "version: {:?} is not MAJOR.MINOR.PATCH",
                self.version
            ));
        }
        if Version::parse(&self.min_agent_version).is_none() {
            p.push(format!(
                "min_agent_version: {:?} is not MAJOR.MINOR.PATCH",
                self.min_agent_version
            ));
        }
        if self.classes.is_empty() || self.classes.len() > 1000 {
            p.push("classes: 1 to 1000 class names".into());
        }
        if self.classes.iter().any(|c| c.is_empty() || c.len() > 64) {
            p.push("classes: every name 1-64 characters".into());
        }
        let [w, h] = self.input;
        if !(32..=4096).contains(&w) || !(32..=4096).contains(&h) || w % 32 != 0 || h % 32 != 0 {
            p.push(format!(
                "input: [{w}, {h}] must be multiples of 32 within 32..=4096"
            ));
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            p.push("sha256: 64 lowercase hex digits".into());
        }
        if self.reference_frames.is_empty() {
            p.push("reference_frames: at least one (the self-test every gateway runs)".into());
        }
        if self.reference_frames.len() > MAX_REFERENCE_FRAMES {
            p.push(format!(
                "reference_frames: {}, at most {MAX_REFERENCE_FRAMES}",
                self.reference_frames.len()
            ));
        }
        for (i, frame) in self.reference_frames.iter().enumerate() {
            let s = frame.synthetic;
            if !(64..=4096).contains(&s.width) || !(48..=4096).contains(&s.height) {
                p.push(format!(
                    "reference_frames[{i}].synthetic: {}x{} is outside 64x48 ..= 4096x4096",
                    s.width, s.height
                ));
            }
            if frame.expect.is_empty() {
                p.push(format!(
                    "reference_frames[{i}].expect: at least one detection (a frame with \
                     none tests nothing)"
                ));
            }
            for (j, e) in frame.expect.iter().enumerate() {
                if !self.classes.contains(&e.class) {
                    p.push(format!(
                        "reference_frames[{i}].expect[{j}].class: {:?} is not one of classes",
                        e.class
                    ));
                }
                if e.bbox.w == 0 || e.bbox.h == 0 {
                    p.push(format!("reference_frames[{i}].expect[{j}].bbox: empty"));
                }
            }
        }
        let t = self.tolerance;
        if !(t.iou > 0.0 && t.iou <= 1.0) {
            p.push("tolerance.iou: within (0, 1]".into());
        }
        if !(t.min_recall > 0.0 && t.min_recall <= 1.0) {
            p.push("tolerance.min_recall: within (0, 1]".into());
        }
        match p.is_empty() {
            true => Ok(()),
            false => Err(p),
        }
    }

    /// Compares what the model found on each reference frame (in order) with what
    /// the manifest expects: the per-frame results, or why the self-test failed.
    pub fn judge(&self, found: &[Vec<FoundDetection>]) -> Result<Vec<FrameResult>, String> {
        if found.len() != self.reference_frames.len() {
            return Err(format!(
                "{} reference frames, {} results",
                self.reference_frames.len(),
                found.len()
            ));
        }
        let results: Vec<FrameResult> = self
            .reference_frames
            .iter()
            .zip(found)
            .map(|(frame, found)| match_frame(frame, found, self.tolerance.iou))
            .collect();
        let expected: usize = results.iter().map(|r| r.expected).sum();
        let matched: usize = results.iter().map(|r| r.matched).sum();
        let recall = matched as f64 / expected.max(1) as f64;
        if recall + 1e-9 < self.tolerance.min_recall {
            let worst = results
                .iter()
                .min_by(|a, b| {
                    let share = |r: &FrameResult| r.matched as f64 / r.expected.max(1) as f64;
                    share(a).total_cmp(&share(b))
                })
                .map(|r| format!("; worst {}: {} of {}", r.name, r.matched, r.expected))
                .unwrap_or_default();
            return Err(format!(
                "self-test failed: {matched} of {expected} expected detections found \
                 (recall {recall:.2}, at least {:.2} required){worst}",
                self.tolerance.min_recall
            ));
        }
        Ok(results)
    }
}

fn match_frame(frame: &ReferenceFrame, found: &[FoundDetection], min_iou: f64) -> FrameResult {
    let mut used = vec![false; found.len()];
    let mut matched = 0;
    for e in &frame.expect {
        let best = found
            .iter()
            .enumerate()
            .filter(|(i, f)| !used[*i] && f.class == e.class)
            .map(|(i, f)| (i, iou(&e.bbox, &f.bbox)))
            .filter(|(_, v)| *v >= min_iou)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, _)) = best {
            used[i] = true;
            matched += 1;
        }
    }
    FrameResult {
        name: frame.name.clone(),
        expected: frame.expect.len(),
        matched,
        extra: used.iter().filter(|u| !**u).count(),
    }
}

/// Intersection over union of two boxes.
pub fn iou(a: &PixelRect, b: &PixelRect) -> f64 {
    let x0 = a.x.max(b.x);
    let y0 = a.y.max(b.y);
    let x1 = (a.x + a.w).min(b.x + b.w);
    let y1 = (a.y + a.h).min(b.y + b.h);
    let inter = f64::from(x1.saturating_sub(x0)) * f64::from(y1.saturating_sub(y0));
    let union = f64::from(a.w) * f64::from(a.h) + f64::from(b.w) * f64::from(b.h) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// A `MAJOR.MINOR.PATCH` version, ordered numerically (pre-release suffixes after `-`
/// are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl Version {
    /// Parses `1.2.3` (or `1.2.3-rc1`, the suffix ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let core = s.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        let v = Self(parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(v)
    }

    /// How `a` compares with `b`; `None` when either does not parse.
    pub fn compare(a: &str, b: &str) -> Option<Ordering> {
        Some(Self::parse(a)?.cmp(&Self::parse(b)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: u32, y: u32, w: u32, h: u32) -> PixelRect {
        PixelRect { x, y, w, h }
    }

    fn manifest() -> ModelManifest {
        ModelManifest {
            name: "m".into(),
            version: "1.2.0".into(),
            classes: vec!["bushing".into(), "clamp".into()],
            input: [320, 256],
            normalisation: String::new(),
            sha256: "a".repeat(64),
            min_agent_version: "0.1.0".into(),
            reference_frames: vec![ReferenceFrame {
                name: "f".into(),
                synthetic: SyntheticScene {
                    seed: 1,
                    index: 0,
                    width: 640,
                    height: 480,
                },
                expect: vec![
                    ExpectedDetection {
                        class: "bushing".into(),
                        bbox: rect(10, 10, 20, 40),
                    },
                    ExpectedDetection {
                        class: "clamp".into(),
                        bbox: rect(100, 10, 20, 20),
                    },
                ],
            }],
            tolerance: Tolerance {
                iou: 0.5,
                min_recall: 1.0,
            },
        }
    }

    #[test]
    fn versions_order_numerically() {
        assert_eq!(Version::compare("1.10.0", "1.9.9"), Some(Ordering::Greater));
        assert_eq!(
            Version::compare("2.0.0-rc1", "2.0.0"),
            Some(Ordering::Equal)
        );
        assert_eq!(Version::parse("1.2"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
    }

    #[test]
    fn every_problem_is_named() {
        let mut m = manifest();
        m.name = "bad name".into();
        m.version = "one".into();
        m.sha256 = "XYZ".into();
        m.input = [300, 256];
        m.reference_frames[0].expect[0].class = "tree".into();
        let problems = m.validate().unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.starts_with("reference_frames[0].expect[0].class")));
        assert!(ModelManifest::parse(b"{\"name\": 1}").is_err());
        let unknown = serde_json::to_string(&manifest())
            .unwrap()
            .replacen('{', "{\"extra\":1,", 1);
        assert!(ModelManifest::parse(unknown.as_bytes()).unwrap_err()[0].contains("extra"));
    }

    #[test]
    fn judging_needs_class_and_overlap() {
        let m = manifest();
        let good = vec![vec![
            FoundDetection {
                class: "bushing".into(),
                bbox: rect(11, 11, 20, 40),
            },
            FoundDetection {
                class: "clamp".into(),
                bbox: rect(100, 12, 20, 20),
            },
            FoundDetection {
                class: "clamp".into(),
                bbox: rect(300, 300, 5, 5),
            },
        ]];
        let results = m.judge(&good).unwrap();
        assert_eq!((results[0].matched, results[0].extra), (2, 1));
        // Right place, wrong class; right class, elsewhere.
        let bad = vec![vec![
            FoundDetection {
                class: "clamp".into(),
                bbox: rect(10, 10, 20, 40),
            },
            FoundDetection {
                class: "clamp".into(),
                bbox: rect(130, 10, 20, 20),
            },
        ]];
        let err = m.judge(&bad).unwrap_err();
        assert!(err.contains("0 of 2"), "{err}");
        assert!(m.judge(&[]).is_err());
    }
}
