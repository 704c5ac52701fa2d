//! One frame in, temperatures and assessed hotspots out: the analysis the agent runs on
//! every camera frame and file, and the hub runs on hand uploads, so both produce the
//! same numbers from the same frame.
//!
//! Steps: radiometric parameters (file values + the thermographer's overrides) →
//! lookup table over the frame's raw range → °C matrix and statistics → hotspots
//! segmented in the raw domain → each assessed by a [`SeverityTable`] → cool exceptions
//! when a similar-component reference is given → the image-quality gate
//! ([`crate::quality`]): a frame that fails it keeps its hotspots, but every assessment is
//! flagged `qualitative`.
//!
//! Detected components are measured afterwards, on [`FrameAnalysis::image`], with
//! [`crate::components::measure_components`] (the detector needs the °C image first).

use crate::components::ComponentOptions;
use crate::flir::{FlirError, FlirFrame};
use crate::hotspot::{
    Hotspot, RegionOfInterest, RoiError, RoiMask, SegmentOptions, Segmenter, ThresholdSide,
};
use crate::image::{RawFrame, TemperatureImage, TemperatureStats};
use crate::quality::{assess_quality, ImageQuality, QualityOptions, SensorCounts};
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
    /// Thresholds of the image-quality gate.
    pub quality: QualityOptions,
    /// Tolerances of the phase grouping of detected components.
    pub components: ComponentOptions,
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
            quality: QualityOptions::default(),
            components: ComponentOptions::default(),
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
    /// Pixels outside the camera's calibrated range, when the frame declares one.
    pub out_of_range_px: Option<u64>,
    /// The verdict of the quality gate; when not quantitative, every assessment above is
    /// flagged `qualitative`.
    pub quality: ImageQuality,
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
    let limits = &frame.camera.limits;
    // Sensor limits are judged with the camera's own conversion, without overrides
    // (the limit is the detector's, whatever emissivity the user corrects to); a file
    // whose own parameters are unusable has none.
    let camera = frame.converter(&ParamOverrides::default()).ok();
    let sensor = SensorCounts {
        saturated_px: count_at_or_above(
            &frame.raw,
            camera
                .as_ref()
                .zip(limits.saturated_max_c)
                .and_then(|(camera, c)| camera.min_raw_at_or_above(c)),
        ),
        // The cold end is the clip limit, not the calibrated range's: cameras read sky and
        // snow below their range routinely (the winter T440 fixture is 57 % below −20 °C)
        // without spoiling the equipment in front; a scene below the clip limit, or one
        // above the calibrated top, is the wrong range for the job.
        out_of_range_px: camera.as_ref().and_then(|camera| {
            out_of_range(
                &frame.raw,
                camera,
                limits.clip_min_c.or(limits.range_min_c),
                limits.range_max_c,
            )
        }),
    };
    analyze_converted(&frame.raw, &converter, &lut, sensor, table, options)
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
    // A stream declares its saturation limit but no calibrated range.
    let sensor = SensorCounts {
        saturated_px: count_at_or_above(raw, prepared.saturation_raw),
        out_of_range_px: None,
    };
    analyze_converted(
        raw,
        &prepared.converter,
        &prepared.lut,
        sensor,
        table,
        options,
    )
}

/// The steps after conversion is decided: the one place they are wired.
fn analyze_converted(
    raw: &RawFrame,
    converter: &RawToCelsius,
    lut: &CelsiusLut,
    sensor: SensorCounts,
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

    let quality = assess_quality(&image, &sensor, &options.quality);
    let mut hotspots = hotspots;
    if !quality.quantitative {
        for a in hotspots.iter_mut().chain(cool_exceptions.iter_mut()) {
            a.severity.qualitative = true;
        }
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
        saturated_px: sensor.saturated_px,
        out_of_range_px: sensor.out_of_range_px,
        quality,
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

/// Pixels outside `[min_c, max_c]` (the camera's clip limit below, its calibrated range's
/// top above), judged with the camera's own parameters; `None` unless both are declared.
fn out_of_range(
    raw: &RawFrame,
    converter: &RawToCelsius,
    min_c: Option<f64>,
    max_c: Option<f64>,
) -> Option<u64> {
    let (min_c, max_c) = (min_c?, max_c?);
    if !(min_c.is_finite() && max_c.is_finite() && min_c < max_c) {
        return None;
    }
    // Counts rise with temperature: in range is [raw(min), raw(max)].
    let lo = converter.min_raw_at_or_above(min_c).unwrap_or(u16::MAX);
    let hi = converter.min_raw_at_or_above(max_c);
    Some(
        raw.counts()
            .iter()
            .filter(|&&c| c < lo || hi.is_some_and(|hi| c > hi))
            .count() as u64,
    )
}

/// Pixels at or above `raw_limit` (none when there is no limit).
fn count_at_or_above(raw: &RawFrame, raw_limit: Option<u16>) -> u64 {
    raw_limit.map_or(0, |r| {
        raw.counts().iter().filter(|&&c| c >= r).count() as u64
    })
}
