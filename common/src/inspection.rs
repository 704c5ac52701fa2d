//! One FLIR file in, findings out: the analysis of a radiometric file (R-JPEG, `.fff`,
//! `.seq`, `.csq`) as a set of stills, shared by the agent (folder drops, `chitti-agent
//! inspect`) and the hub (hand uploads), so that a file gives the same temperatures, the
//! same severities and the same findings wherever it is analysed.
//!
//! - [`inspect_file`] reads every frame of a file, checks that its parameters can give
//!   temperatures, and runs [`analyze_frame`] on each (the very call `chitti-agent
//!   inspect` makes), keeping per frame what a finding needs but not the °C matrix, so a
//!   long sequence does not sit in memory as images.
//! - [`finding_for_region`] turns one assessed region of an analysed frame into a
//!   [`Finding`]: the one place a hotspot becomes wire format (rounding, reference,
//!   measurement), used by the agent's camera analysis too.
//! - [`still_ids`] derives a still's finding and track ids from the file's content, so a
//!   file analysed twice (an agent restart, a re-upload) gives the same ids and the hub's
//!   `ON CONFLICT (id) DO NOTHING` stores it once.
//!
//! - [`inspect_file_with`] does the same with a detector: every detected component is
//!   measured and the phases compared ([`crate::components`]); the reportable phase
//!   comparisons become regions of their own, after the hotspots. The hub's uploads have no
//!   detector and call [`inspect_file`].
//!
//! Every frame passes the image-quality gate ([`crate::quality`]) first; a frame that fails
//! keeps its findings, flagged qualitative (the finding carries the verdict).
//!
//! A still has no tracking: every reportable region of a frame is its own episode,
//! raised at once (`frames: 1`). How the frames of a sequence are reported (each one, or
//! only the hottest) is the caller's policy; [`FileInspection::hottest_frame`] helps.

use crate::analysis::{analyze_frame, AnalysisError, AnalysisOptions, AssessedHotspot};
use crate::components::{measure_components, ComponentMeasurement, ComponentTables};
use crate::finding::{
    DetectedComponent, EvidenceRef, Finding, FindingSource, HotspotSummary, Measurement,
    ModelIdentity, ReferenceSummary, SimilarComponent, TrackState, TrackSummary,
};
use crate::flir::{ContainerKind, FlirError, FlirFile, FlirFrame, ParseLimits};
use crate::image::{TemperatureImage, TemperatureStats};
use crate::quality::ImageQuality;
use crate::radiometry::RadiometricParams;
use crate::severity::{ReferenceKind, ReferenceTemperature, SeverityTable};
use chrono::{DateTime, FixedOffset, Utc};
use sha2::{Digest, Sha256};
use std::io::Cursor;
use uuid::Uuid;

/// Who, where and when a finding is reported for.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingOrigin {
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// Camera id.
    pub camera: String,
    /// Asset the frame shows, when known.
    pub asset: Option<String>,
    /// Pan-tilt preset the frame was taken at.
    pub preset: Option<String>,
    /// Where the frame came from.
    pub source: FindingSource,
    /// When the frame was captured (camera clock).
    pub captured_at: DateTime<FixedOffset>,
    /// When it was analysed.
    pub observed_at: DateTime<Utc>,
    /// The detection model, when one ran.
    pub model: Option<ModelIdentity>,
}

/// The finding of one assessed region (hotspot, cool exception or phase comparison) of a
/// frame analysed with `params` against `reference`, whose quality gate said `quality`.
/// The similar component of a phase comparison comes from the region's own assessment.
/// Its `id` comes from the caller (this crate reads no clock and draws no random
/// numbers): a fresh UUIDv7 for a stream, [`still_ids`] for a still.
#[allow(clippy::too_many_arguments)] // each is a distinct part of the finding
pub fn finding_for_region(
    id: Uuid,
    origin: &FindingOrigin,
    params: &RadiometricParams,
    reference: &ReferenceTemperature,
    region: &AssessedHotspot,
    track: TrackSummary,
    component: Option<DetectedComponent>,
    evidence: Option<EvidenceRef>,
    quality: &ImageQuality,
) -> Finding {
    let h = &region.hotspot;
    let ambient = reference.kind == ReferenceKind::Ambient;
    let inputs = &region.severity.inputs;
    let similar = if reference.kind == ReferenceKind::SimilarComponent {
        Some(SimilarComponent {
            label: reference.source.clone(),
            celsius: reference.celsius,
        })
    } else if inputs.reference_kind == Some(ReferenceKind::SimilarComponent) {
        // A phase comparison: its reference is the sibling it was assessed against.
        inputs
            .reference_c
            .zip(inputs.reference_source.clone())
            .map(|(celsius, label)| SimilarComponent { label, celsius })
    } else {
        None
    };
    Finding {
        id,
        site: origin.site.clone(),
        gateway: origin.gateway.clone(),
        camera: origin.camera.clone(),
        asset: origin.asset.clone(),
        preset: origin.preset.clone(),
        captured_at: origin.captured_at,
        observed_at: origin.observed_at,
        source: origin.source,
        component,
        hotspot: HotspotSummary {
            bbox: h.bbox,
            max_c: round_millidegree(h.max_c),
            mean_c: round_millidegree(h.mean_c),
            max_at: h.max_at,
            area_px: h.area_px,
        },
        reference: ReferenceSummary {
            ambient_c: if ambient {
                reference.celsius
            } else {
                params.atmosphere_c
            },
            ambient_source: if ambient {
                reference.source.clone()
            } else {
                crate::analysis::CAMERA_ATMOSPHERE_SOURCE.to_string()
            },
            similar,
        },
        severity: region.severity.clone(),
        measurement: Measurement {
            emissivity: params.emissivity,
            distance_m: params.object_distance_m,
            reflected_c: params.reflected_c,
            atmosphere_c: params.atmosphere_c,
            relative_humidity: params.relative_humidity,
            qualitative: region.severity.qualitative || !quality.quantitative,
        },
        track,
        model: origin.model.clone(),
        evidence,
        historical: false,
        quality: (!quality.quantitative).then(|| quality.clone()),
    }
}

/// Temperatures travel with a millidegree: the f32 image's noise digits carry nothing.
pub fn round_millidegree(c: f64) -> f64 {
    (c * 1000.0).round() / 1000.0
}

/// A UUIDv7 whose time is `ms` and whose "random" bits come from hashing `seed`: the
/// same input always gives the same id, still time-ordered like any other.
pub fn content_v7(ms: u64, seed: &str) -> Uuid {
    let digest = Sha256::digest(seed.as_bytes());
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(ms, &bits).into_uuid()
}

/// The (finding id, track id) of the `region`-th reportable region of frame
/// `frame_index` of the file whose SHA-256 is `sha256`, captured at `captured_at`.
/// `scope` says whose analysis it is (the agent uses the camera id; the hub's uploads a
/// scope naming the site): the same scope and file always give the same ids.
pub fn still_ids(
    scope: &str,
    sha256: &str,
    frame_index: usize,
    region: usize,
    captured_at: DateTime<FixedOffset>,
) -> (Uuid, Uuid) {
    let ms = captured_at.timestamp_millis().max(0) as u64;
    let seed = format!("{scope}/{sha256}/{frame_index}/{region}");
    (
        content_v7(ms, &format!("finding/{seed}")),
        content_v7(ms, &format!("track/{seed}")),
    )
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The camera a file says it was taken with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CameraIdentity {
    /// Model: FLIR's field, or the EXIF model when FLIR's is empty (DJI's XT2).
    pub model: String,
    /// Serial number (may be empty).
    pub serial: String,
    /// EXIF make, when present.
    pub make: Option<String>,
}

impl CameraIdentity {
    /// The identity of `frame` of `file`.
    pub fn of<R>(file: &FlirFile<R>, frame: &FlirFrame) -> Self
    where
        R: std::io::Read + std::io::Seek,
    {
        let (make, exif_model) = file.exif_make_model();
        let model = match frame.camera.model.as_str() {
            "" => exif_model.unwrap_or_default().to_string(),
            m => m.to_string(),
        };
        Self {
            model,
            serial: frame.camera.serial.clone(),
            make: make.map(str::to_string),
        }
    }

    /// The identity as a camera id (`[a-z0-9-]{1,64}`): model and serial, lowercased,
    /// other characters as `-`; `None` when the file names neither (a FLIR ONE's model
    /// is literally `*`).
    pub fn camera_id(&self) -> Option<String> {
        let slug = |s: &str| {
            let mut out = String::new();
            for c in s.chars() {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_lowercase() || c.is_ascii_digit() {
                    out.push(c);
                } else if !out.ends_with('-') && !out.is_empty() {
                    out.push('-');
                }
            }
            out.trim_end_matches('-').to_string()
        };
        let parts: Vec<String> = [slug(&self.model), slug(&self.serial)]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        let mut id = parts.join("-");
        id.truncate(crate::protocol::MAX_ID_LEN);
        let id = id.trim_end_matches('-').to_string();
        (!id.is_empty()).then_some(id)
    }
}

/// A file could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectionError {
    /// The file could not be opened as a FLIR file.
    #[error(transparent)]
    File(FlirError),
    /// A frame could not be read, or its parameters give no temperatures.
    #[error("frame {index}: {source}")]
    Frame {
        /// 0-based frame index.
        index: usize,
        /// Why.
        source: FlirError,
    },
    /// A frame could not be analysed.
    #[error("frame {index}: {source}")]
    Analysis {
        /// 0-based frame index.
        index: usize,
        /// Why.
        source: AnalysisError,
    },
    /// The file holds no radiometric frame.
    #[error("no radiometric frames")]
    NoFrames,
}

impl InspectionError {
    /// True when the file is not a FLIR radiometric file at all (rather than a damaged
    /// one).
    pub fn is_not_flir(&self) -> bool {
        matches!(self, Self::File(FlirError::NotFlir { .. }) | Self::NoFrames)
    }
}

/// How to inspect a file.
#[derive(Debug, Clone)]
pub struct InspectionOptions {
    /// The severity table every region is assessed with.
    pub table: SeverityTable,
    /// Threshold, areas, reference, overrides.
    pub analysis: AnalysisOptions,
    /// What the parser may allocate.
    pub limits: ParseLimits,
}

/// One analysed frame of a file: what its findings need, without the °C matrix.
#[derive(Debug, Clone)]
pub struct InspectedFrame {
    /// 0-based index in the file.
    pub index: usize,
    /// Capture time by the camera's clock, when the file has one.
    pub captured_at: Option<DateTime<FixedOffset>>,
    /// Whole-frame statistics.
    pub stats: TemperatureStats,
    /// Parameters used (file values with overrides applied).
    pub params: RadiometricParams,
    /// The reference ΔT tables compared against.
    pub reference: ReferenceTemperature,
    /// Hotspot threshold used, °C.
    pub threshold_c: f64,
    /// The reportable regions, as the analysis ordered them: hotspots hottest first,
    /// then cool exceptions, then phase comparisons of detected components. A region's
    /// position here is its index in [`still_ids`].
    pub regions: Vec<AssessedHotspot>,
    /// The detected components, measured (empty without a detector).
    pub components: ComponentMeasurement,
    /// The verdict of the image-quality gate.
    pub quality: ImageQuality,
    /// Pixels at or above the camera's saturation limit.
    pub saturated_px: u64,
    /// Non-fatal problems (a malformed GPS record, a short last frame …).
    pub warnings: Vec<String>,
}

impl InspectedFrame {
    /// The hottest reportable hotspot's max °C (cool exceptions do not count).
    pub fn hottest_region_c(&self) -> Option<f64> {
        self.regions
            .iter()
            .filter(|r| !r.severity.cool_exception)
            .map(|r| r.hotspot.max_c)
            .reduce(f64::max)
    }

    /// The still findings of this frame: one per reportable region, each its own
    /// episode raised at once, with ids from [`still_ids`]. `origin.captured_at` is
    /// replaced by the frame's own capture time when it has one; when it has none, the
    /// ids take their time from the Unix epoch, so that they still depend on the file
    /// alone.
    pub fn still_findings(
        &self,
        origin: &FindingOrigin,
        scope: &str,
        sha256: &str,
        evidence: Option<EvidenceRef>,
    ) -> Vec<Finding> {
        let mut origin = origin.clone();
        if let Some(t) = self.captured_at {
            origin.captured_at = t;
        }
        let id_time = self
            .captured_at
            .unwrap_or_else(|| DateTime::UNIX_EPOCH.fixed_offset());
        self.regions
            .iter()
            .enumerate()
            .map(|(i, region)| {
                let (id, track_id) = still_ids(scope, sha256, self.index, i, id_time);
                let track = TrackSummary {
                    id: track_id,
                    first_seen: origin.observed_at,
                    last_seen: origin.observed_at,
                    frames: 1,
                    state: TrackState::Raised,
                };
                finding_for_region(
                    id,
                    &origin,
                    &self.params,
                    &ambient_of(&self.reference, &self.params),
                    region,
                    track,
                    self.components.component_of(region),
                    evidence.clone(),
                    &self.quality,
                )
            })
            .collect()
    }
}

/// Everything the inspection of one file produced.
#[derive(Debug, Clone)]
pub struct FileInspection {
    /// R-JPEG or FFF sequence.
    pub kind: ContainerKind,
    /// The camera, from the first frame.
    pub camera: CameraIdentity,
    /// Every frame, in file order.
    pub frames: Vec<InspectedFrame>,
}

impl FileInspection {
    /// The frame with the hottest reportable hotspot (the earliest on ties); when no
    /// frame has one, the frame with the hottest pixel. `None` only for no frames.
    pub fn hottest_frame(&self) -> Option<&InspectedFrame> {
        let by_region = self
            .frames
            .iter()
            .filter_map(|f| f.hottest_region_c().map(|c| (f, c)))
            .fold(None::<(&InspectedFrame, f64)>, |best, (f, c)| match best {
                Some((_, b)) if b >= c => best,
                _ => Some((f, c)),
            })
            .map(|(f, _)| f);
        by_region.or_else(|| {
            self.frames
                .iter()
                .fold(None::<&InspectedFrame>, |best, f| match best {
                    Some(b) if b.stats.max_c >= f.stats.max_c => Some(b),
                    _ => Some(f),
                })
        })
    }
}

/// The reference findings report as ambient: the frame's when it is ambient, otherwise the
/// camera's atmospheric temperature (a similar-component reference stays in the region's
/// assessment).
pub fn ambient_of(
    reference: &ReferenceTemperature,
    params: &RadiometricParams,
) -> ReferenceTemperature {
    match reference.kind {
        ReferenceKind::Ambient => reference.clone(),
        ReferenceKind::SimilarComponent => ReferenceTemperature::ambient(
            params.atmosphere_c,
            crate::analysis::CAMERA_ATMOSPHERE_SOURCE,
        ),
    }
}

/// Finds the components in a frame's °C image (a detector, as the caller has one).
pub type DetectFn<'a> = dyn FnMut(&TemperatureImage) -> Vec<DetectedComponent> + 'a;

/// Reads every frame of a FLIR file held in memory and analyses each one as a still.
/// Any frame that cannot be read, or whose parameters give no temperatures, fails the
/// whole file (as the agent's folder source quarantines it): a partly readable file is
/// a damaged file.
pub fn inspect_file(
    bytes: &[u8],
    options: &InspectionOptions,
) -> Result<FileInspection, InspectionError> {
    inspect_file_with(bytes, options, None)
}

/// [`inspect_file`], with `detect` finding the components of each frame: they are
/// measured, their phases compared, and the reportable comparisons added to the frame's
/// regions (after the hotspots and cool exceptions).
pub fn inspect_file_with(
    bytes: &[u8],
    options: &InspectionOptions,
    mut detect: Option<&mut DetectFn<'_>>,
) -> Result<FileInspection, InspectionError> {
    let mut file =
        FlirFile::open(Cursor::new(bytes), options.limits).map_err(InspectionError::File)?;
    let kind = file.kind();
    let mut camera = None;
    let mut frames = Vec::new();
    let mut index = 0;
    loop {
        let frame = match file.frame(index) {
            Ok(f) => f,
            Err(FlirError::NoSuchFrame { .. }) if index > 0 => break,
            Err(source) => return Err(InspectionError::Frame { index, source }),
        };
        // Parameters the formula cannot use make every temperature meaningless.
        frame
            .converter(&Default::default())
            .map_err(|source| InspectionError::Frame { index, source })?;
        let analysis = analyze_frame(&frame, &options.table, &options.analysis)
            .map_err(|source| InspectionError::Analysis { index, source })?;
        if camera.is_none() {
            camera = Some(CameraIdentity::of(&file, &frame));
        }
        let mut warnings = frame.warnings.clone();
        if frame.truncated_bytes > 0 {
            warnings.push(format!(
                "frame {index} declares {} byte(s) past the end of the file",
                frame.truncated_bytes
            ));
        }
        let components = match detect.as_mut() {
            Some(detect) => measure_frame_components(
                &analysis.image,
                &detect(&analysis.image),
                &ambient_of(&analysis.reference, &analysis.params),
                &options.table,
                &analysis.quality,
                &options.analysis,
            ),
            None => ComponentMeasurement::default(),
        };
        let comparisons: Vec<AssessedHotspot> = components
            .comparison_regions()
            .into_iter()
            .map(|(_, region)| region)
            .collect();
        let regions = analysis
            .hotspots
            .into_iter()
            .chain(analysis.cool_exceptions)
            .filter(|r| r.severity.is_reportable())
            .chain(comparisons)
            .collect();
        frames.push(InspectedFrame {
            index,
            captured_at: frame.camera.captured_at.map(|t| t.0),
            stats: analysis.stats,
            params: analysis.params,
            reference: analysis.reference,
            threshold_c: analysis.threshold_c,
            regions,
            saturated_px: analysis.saturated_px,
            warnings,
            components,
            quality: analysis.quality,
        });
        index += 1;
    }
    let camera = camera.ok_or(InspectionError::NoFrames)?;
    Ok(FileInspection {
        kind,
        camera,
        frames,
    })
}

/// Measures the detected components of an analysed frame against its ambient reference
/// with the tables that go with the camera's `table` ([`ComponentTables::for_table`]),
/// flagged qualitative when the frame failed the quality gate: the one place the agent's
/// camera analysis, `chitti-agent inspect` and [`inspect_file_with`] do it.
pub fn measure_frame_components(
    image: &TemperatureImage,
    detections: &[DetectedComponent],
    ambient: &ReferenceTemperature,
    table: &SeverityTable,
    quality: &ImageQuality,
    options: &AnalysisOptions,
) -> ComponentMeasurement {
    let mut measured = measure_components(
        image,
        detections,
        ambient,
        &ComponentTables::for_table(table),
        &options.components,
    );
    if !quality.quantitative {
        measured.mark_qualitative();
    }
    measured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ids_are_stable_version_7_and_distinct() {
        let a = content_v7(1_700_000_000_000, "finding/cam/abc/0/0");
        assert_eq!(a, content_v7(1_700_000_000_000, "finding/cam/abc/0/0"));
        assert_ne!(a, content_v7(1_700_000_000_000, "finding/cam/abc/0/1"));
        assert_eq!(a.get_version_num(), 7);
        let (secs, _) = a.get_timestamp().unwrap().to_unix();
        assert_eq!(secs, 1_700_000_000);
    }

    #[test]
    fn still_ids_depend_on_scope_file_frame_and_region() {
        let t = DateTime::parse_from_rfc3339("2026-11-30T03:12:45.120+05:30").unwrap();
        let base = still_ids("cam-1", "ab", 0, 0, t);
        assert_eq!(base, still_ids("cam-1", "ab", 0, 0, t));
        assert_ne!(base.0, base.1, "finding and track ids differ");
        for other in [
            still_ids("cam-2", "ab", 0, 0, t),
            still_ids("cam-1", "cd", 0, 0, t),
            still_ids("cam-1", "ab", 1, 0, t),
            still_ids("cam-1", "ab", 0, 1, t),
        ] {
            assert_ne!(base.0, other.0);
            assert_ne!(base.1, other.1);
        }
    }

    #[test]
    fn camera_ids_are_slugs_of_model_and_serial() {
        let id = |model: &str, serial: &str| {
            CameraIdentity {
                model: model.into(),
                serial: serial.into(),
                make: None,
            }
            .camera_id()
        };
        assert_eq!(
            id("FLIR T640", "62202337").as_deref(),
            Some("flir-t640-62202337")
        );
        assert_eq!(id("T420 (incl Wi-", "").as_deref(), Some("t420-incl-wi"));
        assert_eq!(id("*", ""), None);
        assert_eq!(id("", ""), None);
        let long = id(&"A".repeat(80), "1").unwrap();
        assert_eq!(long.len(), crate::protocol::MAX_ID_LEN);
        crate::protocol::validate_id("camera", &long).unwrap();
    }

    #[test]
    fn a_text_file_is_not_flir_and_an_empty_one_neither() {
        let options = InspectionOptions {
            table: crate::severity::SeverityCatalog::builtin()
                .get("utility-absolute")
                .unwrap()
                .clone(),
            analysis: AnalysisOptions::default(),
            limits: ParseLimits::default(),
        };
        for bytes in [&b"hello, world"[..], &[][..]] {
            let err = inspect_file(bytes, &options).unwrap_err();
            assert!(err.is_not_flir(), "{err}");
            assert!(
                err.to_string().starts_with("not a FLIR radiometric file"),
                "{err}"
            );
        }
    }
}
