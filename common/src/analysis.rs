//! One frame in, temperatures and assessed hotspots out: the analysis the agent runs on
//! every camera frame and file, and the hub runs on hand uploads, so both produce the
//! same numbers from the same frame.
//!
//! Steps: radiometric parameters (file values + the thermographer's overrides) →
//! lookup table over the frame's raw range → °C matrix and statistics → hotspots
//! segmented in the raw domain → each assessed by a [`SeverityTable`] → cool exceptions
//! when a similar-component reference is given.

use crate::flir::{FlirError, FlirFrame};
use crate::hotspot::{
    Hotspot, RegionOfInterest, RoiError, RoiMask, SegmentOptions, Segmenter, ThresholdSide,
};
use crate::image::{RawFrame, TemperatureImage, TemperatureStats};
use crate::radiometry::{
    CelsiusLut, ConversionReport, ParamOverrides, RadiometricParams, RawToCelsius,
};
use crate::severity::{
    ReferenceKind, ReferenceTemperature, SeverityAssessment, SeverityBasis, SeverityInputs,
    SeverityTable,
};
use serde::{Deserialize, Serialize};

/// Where the ambient reference comes from when the caller gives none.
pub const CAMERA_ATMOSPHERE_SOURCE: &str = "camera atmospheric temperature";

/// How to analyse a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisOptions {
    /// Corrections to the file's radiometric parameters.
    pub overrides: ParamOverrides,
    /// Hotspot threshold, °C. `None` derives it from the table: its first level's bound
    /// (absolute tables), or the reference plus that bound (ΔT tables), so every pixel
    /// that could reach level 1 is searched.
    pub threshold_c: Option<f64>,
    /// Smallest region kept, pixels.
    pub min_area_px: u32,
    /// Most regions reported, hottest first.
    pub max_hotspots: usize,
    /// Only pixels inside these regions are analysed (all pixels when empty).
    pub rois: Vec<RegionOfInterest>,
    /// Reference temperature for ΔT tables. `None` uses the camera's atmospheric
    /// temperature as the ambient reference.
    pub reference: Option<ReferenceTemperature>,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            overrides: ParamOverrides::default(),
            threshold_c: None,
            min_area_px: 4,
            max_hotspots: 100,
            rois: Vec::new(),
            reference: None,
        }
    }
}

/// A frame could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// The file or its parameters are unusable.
    #[error(transparent)]
    Flir(#[from] FlirError),
    /// A region of interest is unusable.
    #[error("regions of interest: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Roi(Vec<RoiError>),
    /// The threshold is not a finite temperature.
    #[error("threshold {0} °C is not a finite temperature")]
    BadThreshold(f64),
}

/// A hotspot (or cold region) with its severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssessedHotspot {
    /// The region.
    pub hotspot: Hotspot,
    /// Its assessment.
    pub severity: SeverityAssessment,
}

/// Everything the analysis of one frame produced.
#[derive(Debug, Clone)]
pub struct FrameAnalysis {
    /// Parameters actually used (file values with overrides applied).
    pub params: RadiometricParams,
    /// The °C matrix.
    pub image: TemperatureImage,
    /// Pixels that needed clamping.
    pub conversion: ConversionReport,
    /// Whole-frame statistics.
    pub stats: TemperatureStats,
    /// The hotspot threshold used, °C.
    pub threshold_c: f64,
    /// The reference used for ΔT tables.
    pub reference: ReferenceTemperature,
    /// Hotspots at or above the threshold, hottest first, each assessed.
    pub hotspots: Vec<AssessedHotspot>,
    /// Regions far colder than a similar-component reference (cool exceptions).
    pub cool_exceptions: Vec<AssessedHotspot>,
    /// Regions dropped as smaller than the minimum area.
    pub below_min_area: u32,
    /// Regions dropped beyond `max_hotspots`.
    pub dropped_hotspots: u32,
    /// Pixels at or above the camera's saturation limit: their true temperature may be
    /// higher than reported.
    pub saturated_px: u64,
}

/// Analyses one frame of a file against one severity table.
pub fn analyze_frame(
    frame: &FlirFrame,
    table: &SeverityTable,
    options: &AnalysisOptions,
) -> Result<FrameAnalysis, AnalysisError> {
    let converter = frame.converter(&options.overrides)?;
    let (lo, hi) = frame.raw.min_max();
    // A file is analysed once: a table over its own raw range is cheaper than a full one.
    let lut = CelsiusLut::for_range(&converter, lo, hi);
    let saturated_px = count_at_or_above(
        &frame.raw,
        saturation_raw(&frame.camera.params, frame.camera.limits.saturated_max_c),
    );
    analyze_converted(&frame.raw, &converter, &lut, saturated_px, table, options)
}

/// The raw → °C conversion of one camera configuration, prepared once and reused for
/// every frame of a stream while the parameters hold (a full 65 536-entry table).
#[derive(Debug, Clone)]
pub struct PreparedRadiometry {
    converter: RawToCelsius,
    lut: CelsiusLut,
    camera_params: RadiometricParams,
    saturated_max_c: Option<f64>,
    saturation_raw: Option<u16>,
}

impl PreparedRadiometry {
    /// Prepares `camera` parameters with the thermographer's `overrides`;
    /// `saturated_max_c` is the camera's upper saturation limit when known.
    pub fn new(
        camera: RadiometricParams,
        overrides: &ParamOverrides,
        saturated_max_c: Option<f64>,
    ) -> Result<Self, AnalysisError> {
        let converter = RawToCelsius::new(camera.with_overrides(overrides))
            .map_err(|e| AnalysisError::Flir(FlirError::InvalidParams(e)))?;
        Ok(Self {
            lut: CelsiusLut::full(&converter),
            converter,
            camera_params: camera,
            saturated_max_c,
            saturation_raw: saturation_raw(&camera, saturated_max_c),
        })
    }

    /// Prepares temperature-linear counts (kelvin = count × `kelvin_per_count`);
    /// `params` records the object parameters the camera applied.
    pub fn temperature_linear(
        kelvin_per_count: f64,
        params: RadiometricParams,
        saturated_max_c: Option<f64>,
    ) -> Result<Self, AnalysisError> {
        let converter = RawToCelsius::temperature_linear(kelvin_per_count, params)
            .map_err(|e| AnalysisError::Flir(FlirError::InvalidParams(e)))?;
        let saturation_raw = saturated_max_c.and_then(|c| converter.min_raw_at_or_above(c));
        Ok(Self {
            lut: CelsiusLut::full(&converter),
            converter,
            camera_params: params,
            saturated_max_c,
            saturation_raw,
        })
    }

    /// True when this is a temperature-linear preparation with this scale.
    pub fn is_linear_with(&self, kelvin_per_count: f64) -> bool {
        self.converter.kelvin_per_count() == Some(kelvin_per_count)
    }

    /// True when this preparation was made from these inputs (so it can be reused).
    pub fn matches(
        &self,
        camera: &RadiometricParams,
        overrides: &ParamOverrides,
        saturated_max_c: Option<f64>,
    ) -> bool {
        self.converter.kelvin_per_count().is_none()
            && self.camera_params == *camera
            && *self.converter.params() == camera.with_overrides(overrides)
            && self.saturated_max_c == saturated_max_c
    }

    /// The converter (parameters with overrides applied).
    pub fn converter(&self) -> &RawToCelsius {
        &self.converter
    }
}

/// Analyses one stream frame with a prepared conversion; `options.overrides` are the
/// ones `prepared` was made with and are not applied again.
pub fn analyze_prepared(
    raw: &RawFrame,
    prepared: &PreparedRadiometry,
    table: &SeverityTable,
    options: &AnalysisOptions,
) -> Result<FrameAnalysis, AnalysisError> {
    let saturated_px = count_at_or_above(raw, prepared.saturation_raw);
    analyze_converted(
        raw,
        &prepared.converter,
        &prepared.lut,
        saturated_px,
        table,
        options,
    )
}

/// The steps after conversion is decided: the one place they are wired.
fn analyze_converted(
    raw: &RawFrame,
    converter: &RawToCelsius,
    lut: &CelsiusLut,
    saturated_px: u64,
    table: &SeverityTable,
    options: &AnalysisOptions,
) -> Result<FrameAnalysis, AnalysisError> {
    let params = *converter.params();
    let (image, conversion) = lut.convert(raw);
    let stats = image.stats();

    let reference = options.reference.clone().unwrap_or_else(|| {
        ReferenceTemperature::ambient(params.atmosphere_c, CAMERA_ATMOSPHERE_SOURCE)
    });
    let threshold_c = match options.threshold_c {
        Some(t) => t,
        None => default_threshold(table, &reference),
    };
    if !threshold_c.is_finite() {
        return Err(AnalysisError::BadThreshold(threshold_c));
    }
    let roi = if options.rois.is_empty() {
        None
    } else {
        Some(RoiMask::build(raw.width(), raw.height(), &options.rois).map_err(AnalysisError::Roi)?)
    };
    let segment_options = SegmentOptions {
        threshold_c,
        side: ThresholdSide::AtOrAbove,
        min_area_px: options.min_area_px,
        max_regions: options.max_hotspots,
    };
    let hot = Segmenter::new(converter, segment_options).segment(raw, lut, roi.as_ref());
    let assess = |h: Hotspot| {
        let severity = table.assess(&SeverityInputs {
            max_c: h.max_c,
            reference: Some(reference.clone()),
        });
        AssessedHotspot {
            hotspot: h,
            severity,
        }
    };
    let hotspots: Vec<AssessedHotspot> = hot.regions.into_iter().map(assess).collect();

    // A phase far colder than its siblings (open circuit, lost load) is a finding too.
    // Only against a similar component: against ambient, sky and shade would qualify.
    let mut cool_exceptions = Vec::new();
    if let (ReferenceKind::SimilarComponent, Some(delta)) =
        (reference.kind, table.cool_exception_delta_c)
    {
        let cold = Segmenter::new(
            converter,
            SegmentOptions {
                threshold_c: reference.celsius - delta,
                side: ThresholdSide::AtOrBelow,
                ..segment_options
            },
        )
        .segment(raw, lut, roi.as_ref());
        cool_exceptions = cold
            .regions
            .into_iter()
            .map(assess)
            .filter(|a| a.severity.cool_exception)
            .collect();
    }

    Ok(FrameAnalysis {
        params,
        image,
        conversion,
        stats,
        threshold_c,
        reference,
        hotspots,
        cool_exceptions,
        below_min_area: hot.below_min_area,
        dropped_hotspots: hot.dropped_regions,
        saturated_px,
    })
}

/// The lowest temperature that can reach the table's first level.
pub fn default_threshold(table: &SeverityTable, reference: &ReferenceTemperature) -> f64 {
    let first = table.levels.first().map_or(0.0, |l| l.from_c);
    match table.basis {
        SeverityBasis::Absolute => first,
        _ => reference.celsius + first,
    }
}

/// The smallest raw count at or above the camera's upper saturation limit, judged with
/// the camera's own parameters (the limit is the detector's, whatever emissivity the
/// user corrects to).
fn saturation_raw(camera: &RadiometricParams, limit_c: Option<f64>) -> Option<u16> {
    RawToCelsius::new(*camera)
        .ok()?
        .min_raw_at_or_above(limit_c?)
}

/// Pixels at or above `raw_limit` (none when there is no limit).
fn count_at_or_above(raw: &RawFrame, raw_limit: Option<u16>) -> u64 {
    raw_limit.map_or(0, |r| {
        raw.counts().iter().filter(|&&c| c >= r).count() as u64
    })
}
