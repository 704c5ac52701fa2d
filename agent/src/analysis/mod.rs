//! The analysis chain of one camera: radiometry (a prepared lookup table per parameter
//! set) → detector → hotspots and severity (the thermal core's one analysis) → tracker
//! → [`Finding`]s with their evidence.
//!
//! **Detections drive regions.** Every component the [`Detector`] finds is measured
//! (`chitti_common::components`): °C statistics in its box, and — when it lines up with
//! siblings of its class — a phase comparison (`neta-similar` against the coolest loaded
//! sibling, named in the finding). The reportable comparisons are regions of their own,
//! tracked and reported beside the thresholded hotspots; a hotspot inside a component's box
//! carries that component, and hotspots outside every box are reported as before. Every
//! frame passes the image-quality gate first; a frame that fails keeps its findings,
//! flagged qualitative.
//!
//! One [`CameraAnalyzer`] per camera, driven from that camera's analysis thread: it is
//! CPU work (a 640×480 frame is ~1 ms), so it never runs on an async worker.
//!
//! A region becomes a [`Finding`] through `chitti_common::inspection::finding_for_region`,
//! and the findings of a file get their content-derived ids from
//! `chitti_common::inspection::still_ids`: the functions the hub's hand uploads use too.

pub mod config;
pub mod tracker;

pub use config::{
    AnalysisConfig, CameraContext, RadiometryOverrides, ReferenceConfig, TrackingConfig,
};

use crate::sources::{FramePayload, SourceFrame};
use chitti_common::analysis::{
    analyze_prepared, AnalysisError, AnalysisOptions, AssessedHotspot, FrameAnalysis,
    PreparedRadiometry,
};
use chitti_common::components::ComponentMeasurement;
use chitti_common::components::ComponentTables;
use chitti_common::evidence::{encode_radiometric_png, RadiometricPngMeta};
use chitti_common::finding::{DetectedComponent, EvidenceRef, Finding, ModelIdentity};
use chitti_common::hotspot::RegionOfInterest;
use chitti_common::inspection::{
    ambient_of, finding_for_region, measure_frame_components, still_ids, FindingOrigin,
};
use chitti_common::radiometry::ParamOverrides;
use chitti_common::severity::{ReferenceTemperature, SeverityTable};
use chrono::Utc;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracker::{still_events, TrackEvent, Tracker};

pub use chitti_detector::{Detection, Detector, NoDetector};

/// A blob of evidence: the original file, or a radiometric PNG of a stream frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceBlob {
    /// SHA-256 of `bytes`, lowercase hex.
    pub sha256: String,
    /// The blob.
    pub bytes: Arc<Vec<u8>>,
}

impl EvidenceBlob {
    /// Hashes `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            sha256: sha256_hex(&bytes),
            bytes: Arc::new(bytes),
        }
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A finding ready for the outbox.
#[derive(Debug, Clone)]
pub struct NewFinding {
    /// The finding.
    pub finding: Finding,
    /// True when at the top level of its table: never evicted from the outbox.
    pub critical: bool,
    /// Its evidence (shared by every finding of the same frame).
    pub evidence: Option<EvidenceBlob>,
}

/// What one frame produced.
#[derive(Debug)]
pub struct FrameOutcome {
    /// New findings (raised, updated, cleared).
    pub findings: Vec<NewFinding>,
    /// Regions found in the frame.
    pub regions: usize,
    /// Time spent analysing it.
    pub latency: Duration,
    /// The detected components, measured (empty without a detector).
    pub components: ComponentMeasurement,
    /// Whether the frame passed the image-quality gate (true for skipped frames).
    pub quantitative: bool,
    /// True when the frame was skipped (patrol head moving).
    pub skipped: bool,
}

impl Default for FrameOutcome {
    fn default() -> Self {
        Self {
            findings: Vec::new(),
            regions: 0,
            latency: Duration::ZERO,
            components: ComponentMeasurement::default(),
            quantitative: true,
            skipped: false,
        }
    }
}

/// The counts of a frame and how to read them.
struct FrameCounts<'a> {
    raw: &'a chitti_common::image::RawFrame,
    params: chitti_common::radiometry::RadiometricParams,
    saturated_max_c: Option<f64>,
    kelvin_per_count: Option<f64>,
}

/// The analysis state of one camera.
pub struct CameraAnalyzer {
    site: String,
    gateway: String,
    camera: String,
    asset: Option<String>,
    patrols: bool,
    table: SeverityTable,
    component_tables: ComponentTables,
    overrides: ParamOverrides,
    options: AnalysisOptions,
    preset_rois: HashMap<String, Vec<RegionOfInterest>>,
    preset_assets: HashMap<String, Option<String>>,
    tracking: TrackingConfig,
    prepared: Option<PreparedRadiometry>,
    trackers: HashMap<Option<String>, Tracker>,
    detector: Box<dyn Detector>,
}

impl std::fmt::Debug for CameraAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraAnalyzer")
            .field("camera", &self.camera)
            .field("table", &self.table.id)
            .finish_non_exhaustive()
    }
}

impl CameraAnalyzer {
    /// The analyzer of one camera: `[analysis]`, what it needs to know about the camera
    /// (`camera`), and the camera's severity table.
    pub fn new(
        a: &AnalysisConfig,
        camera: &CameraContext<'_>,
        table: SeverityTable,
        detector: Box<dyn Detector>,
    ) -> Self {
        let options = AnalysisOptions {
            overrides: camera.radiometry.to_param_overrides(),
            threshold_c: a.threshold_c,
            min_area_px: a.min_area_px,
            max_hotspots: a.max_hotspots,
            rois: camera.rois.to_vec(),
            reference: a.reference.as_ref().map(|r| ReferenceTemperature {
                celsius: r.celsius,
                kind: r.kind,
                source: r.source.clone(),
            }),
            ..AnalysisOptions::default()
        };
        let presets = camera.presets.unwrap_or(&[]);
        Self {
            site: camera.site.to_string(),
            gateway: camera.gateway.to_string(),
            camera: camera.camera.to_string(),
            asset: camera.asset.map(str::to_string),
            patrols: camera.presets.is_some(),
            component_tables: ComponentTables::for_table(&table),
            table,
            overrides: camera.radiometry.to_param_overrides(),
            options,
            preset_rois: presets
                .iter()
                .filter(|p| !p.rois.is_empty())
                .map(|p| (p.id.clone(), p.rois.clone()))
                .collect(),
            preset_assets: presets
                .iter()
                .map(|p| (p.id.clone(), p.asset.clone()))
                .collect(),
            tracking: a.tracking.clone(),
            prepared: None,
            trackers: HashMap::new(),
            detector,
        }
    }

    /// The camera id.
    pub fn camera(&self) -> &str {
        &self.camera
    }

    /// The detection model in use.
    pub fn model(&self) -> Option<ModelIdentity> {
        self.detector.model()
    }

    /// Analyses one frame.
    pub fn process(&mut self, frame: &SourceFrame) -> Result<FrameOutcome, AnalysisError> {
        let started = Instant::now();
        if self.patrols && frame.position.is_none() {
            // The head is moving or settling: the picture is smeared and its framing
            // unknown, so nothing in it is attributed to any asset.
            return Ok(FrameOutcome {
                skipped: true,
                ..FrameOutcome::default()
            });
        }
        let counts = match &frame.payload {
            FramePayload::Radiometric(rad) => {
                let reuse = self
                    .prepared
                    .as_ref()
                    .is_some_and(|p| p.matches(&rad.params, &self.overrides, rad.saturated_max_c));
                if !reuse {
                    self.prepared = Some(PreparedRadiometry::new(
                        rad.params,
                        &self.overrides,
                        rad.saturated_max_c,
                    )?);
                }
                FrameCounts {
                    raw: &rad.raw,
                    params: rad.params,
                    saturated_max_c: rad.saturated_max_c,
                    kelvin_per_count: None,
                }
            }
            FramePayload::TemperatureLinear(t) => {
                let reuse = self
                    .prepared
                    .as_ref()
                    .is_some_and(|p| p.is_linear_with(t.kelvin_per_count));
                // The camera applied its own object parameters; the record keeps what
                // the configuration says they are.
                let params =
                    crate::sources::nominal_camera_params().with_overrides(&self.overrides);
                if !reuse {
                    self.prepared = Some(PreparedRadiometry::temperature_linear(
                        t.kelvin_per_count,
                        params,
                        None,
                    )?);
                }
                FrameCounts {
                    raw: &t.counts,
                    params,
                    saturated_max_c: None,
                    kelvin_per_count: Some(t.kelvin_per_count),
                }
            }
            FramePayload::Preview(_) => {
                // Rendered video has no temperatures: only a detector could report
                // from it (qualitative findings), and none runs yet.
                return Ok(FrameOutcome {
                    latency: started.elapsed(),
                    ..FrameOutcome::default()
                });
            }
        };
        let prepared = self.prepared.as_ref().expect("prepared above");
        let preset = frame.position.as_ref().map(|p| p.preset.clone());
        let mut options_for_preset;
        let options = match preset.as_ref().and_then(|p| self.preset_rois.get(p)) {
            Some(rois) => {
                options_for_preset = self.options.clone();
                options_for_preset.rois = rois.clone();
                &options_for_preset
            }
            None => &self.options,
        };
        let analysis = analyze_prepared(counts.raw, prepared, &self.table, options)?;
        let detections: Vec<DetectedComponent> = self
            .detector
            .detect(&analysis.image)
            .iter()
            .map(Detection::to_component)
            .collect();
        let ambient = ambient_of(&analysis.reference, &analysis.params);
        let components = measure_frame_components(
            &analysis.image,
            &detections,
            &ambient,
            &self.table,
            &analysis.quality,
            options,
        );
        let comparisons = components.comparison_regions();
        let regions = analysis.hotspots.len() + analysis.cool_exceptions.len() + comparisons.len();
        let observed: Vec<AssessedHotspot> = analysis
            .hotspots
            .iter()
            .chain(&analysis.cool_exceptions)
            .cloned()
            .chain(comparisons.into_iter().map(|(_, region)| region))
            .collect();
        let now = Utc::now();
        let events = match frame.file {
            // A still image: each hotspot is its own episode.
            Some(_) => still_events(observed, now),
            None => {
                let tracking = self.tracking.clone();
                self.trackers
                    .entry(preset.clone())
                    .or_insert_with(|| Tracker::new(tracking))
                    .observe(
                        observed,
                        &[
                            &self.table,
                            &self.component_tables.similar,
                            &self.component_tables.ambient,
                        ],
                        &analysis.reference,
                        now,
                    )
            }
        };
        let mut findings = Vec::with_capacity(events.len());
        if !events.is_empty() {
            let evidence = self.evidence(frame, &counts);
            for (i, mut event) in events.into_iter().enumerate() {
                let mut finding = self.finding(
                    frame,
                    &analysis,
                    &components,
                    event.clone(),
                    evidence.clone(),
                );
                if let Some(file) = &frame.file {
                    // A file gives the same ids every time it is analysed, so a file
                    // processed again after a crash duplicates nothing downstream.
                    let (id, track_id) = still_ids(
                        &self.camera,
                        &file.sha256,
                        file.frame_index,
                        i,
                        frame.captured_at,
                    );
                    event.track.id = track_id;
                    finding.finding.track.id = track_id;
                    finding.finding.id = id;
                }
                findings.push(finding);
            }
        }
        Ok(FrameOutcome {
            findings,
            regions,
            latency: started.elapsed(),
            quantitative: analysis.quality.quantitative,
            components,
            skipped: false,
        })
    }

    fn evidence(&self, frame: &SourceFrame, counts: &FrameCounts<'_>) -> Option<EvidenceBlob> {
        if let Some(file) = &frame.file {
            return Some(EvidenceBlob {
                sha256: file.sha256.clone(),
                bytes: Arc::clone(&file.bytes),
            });
        }
        let meta = RadiometricPngMeta {
            version: 1,
            camera: self.camera.clone(),
            captured_at: frame.captured_at,
            params: counts.params,
            saturated_max_c: counts.saturated_max_c,
            kelvin_per_count: counts.kelvin_per_count,
        };
        match encode_radiometric_png(counts.raw, &meta) {
            Ok(png) => Some(EvidenceBlob::new(png)),
            Err(err) => {
                tracing::warn!(camera = %self.camera, %err, "evidence not kept");
                None
            }
        }
    }

    fn finding(
        &self,
        frame: &SourceFrame,
        analysis: &FrameAnalysis,
        components: &ComponentMeasurement,
        event: TrackEvent,
        evidence: Option<EvidenceBlob>,
    ) -> NewFinding {
        let component = components.component_of(&event.observation);
        let preset = frame.position.as_ref().map(|p| p.preset.clone());
        let asset = match &frame.position {
            Some(pos) => pos
                .asset
                .clone()
                .or_else(|| self.preset_assets.get(&pos.preset).cloned().flatten()),
            None => None,
        }
        .or_else(|| self.asset.clone());
        let severity = &event.observation.severity;
        let table = [
            &self.table,
            &self.component_tables.similar,
            &self.component_tables.ambient,
        ]
        .into_iter()
        .find(|t| t.id == severity.table)
        .unwrap_or(&self.table);
        let critical = severity.level > 0 && severity.level >= table.highest_rank();
        let origin = FindingOrigin {
            site: self.site.clone(),
            gateway: self.gateway.clone(),
            camera: self.camera.clone(),
            asset,
            preset,
            source: frame.source,
            captured_at: frame.captured_at,
            observed_at: Utc::now(),
            model: self.detector.model(),
        };
        let finding = finding_for_region(
            uuid::Uuid::now_v7(),
            &origin,
            &analysis.params,
            &ambient_of(&analysis.reference, &analysis.params),
            &event.observation,
            event.track,
            component,
            evidence.as_ref().map(|e| EvidenceRef {
                sha256: e.sha256.clone(),
            }),
            &analysis.quality,
        );
        NewFinding {
            finding,
            critical,
            evidence,
        }
    }
}
