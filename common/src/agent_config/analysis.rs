//! Analysis configuration (`[analysis]`, a camera's `radiometry`).

use super::patrol::PresetConfig;
use crate::hotspot::RegionOfInterest;
use crate::radiometry::ParamOverrides;
use crate::severity::ReferenceKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How frames are analysed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Severity table id (built-in or from `tables_file`).
    #[serde(default = "default_table")]
    pub table: String,
    /// User severity tables (TOML, see `crate::severity::parse_user_tables`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables_file: Option<PathBuf>,
    /// Hotspot threshold, °C; default: the lowest temperature that can reach the
    /// table's first level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_c: Option<f64>,
    /// Smallest hotspot, pixels.
    #[serde(default = "default_min_area")]
    pub min_area_px: u32,
    /// Most hotspots per frame, hottest first.
    #[serde(default = "default_max_hotspots")]
    pub max_hotspots: usize,
    /// Reference for ΔT tables; default: the camera's atmospheric temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceConfig>,
    /// Tracking across frames.
    #[serde(default)]
    pub tracking: TrackingConfig,
}

/// A fixed reference temperature for ΔT tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// Ambient air or a similar component.
    pub kind: ReferenceKind,
    /// Its temperature, °C.
    pub celsius: f64,
    /// Where the value comes from (weather station, sibling phase …).
    #[serde(default = "default_reference_source")]
    pub source: String,
}

/// How hotspots are followed across frames of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// Frames in a row a hotspot must be seen before it is raised.
    #[serde(default = "default_raise_after")]
    pub raise_after_frames: u32,
    /// Frames in a row a hotspot must be missing before it is cleared.
    #[serde(default = "default_clear_after")]
    pub clear_after_frames: u32,
    /// A raised hotspot is reported again when its peak rises by this much, °C.
    #[serde(default = "default_update_delta")]
    pub update_delta_c: f64,
    /// Hysteresis at severity boundaries, °C.
    #[serde(default = "one")]
    pub hysteresis_c: f64,
    /// A region belongs to a track when its hottest pixel is this close to the track's,
    /// pixels, or their boxes overlap.
    #[serde(default = "default_match_distance")]
    pub match_distance_px: u32,
}

/// Corrections to the radiometric parameters a camera or file reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiometryOverrides {
    /// Object emissivity, 0 < E ≤ 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emissivity: Option<f64>,
    /// Object distance, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    /// Reflected apparent temperature, °C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflected_c: Option<f64>,
    /// Atmospheric temperature, °C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atmosphere_c: Option<f64>,
    /// Relative humidity, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub humidity_percent: Option<f64>,
}

crate::defaults_from_serde!(AnalysisConfig, TrackingConfig);

fn default_table() -> String {
    "utility-absolute".into()
}

fn default_min_area() -> u32 {
    4
}

fn default_max_hotspots() -> usize {
    32
}

fn default_reference_source() -> String {
    "configured reference".into()
}

fn default_raise_after() -> u32 {
    3
}

fn default_clear_after() -> u32 {
    30
}

fn default_update_delta() -> f64 {
    2.0
}

fn one() -> f64 {
    1.0
}

fn default_match_distance() -> u32 {
    24
}

impl RadiometryOverrides {
    /// As the thermal core's overrides (humidity as a fraction).
    pub fn to_param_overrides(&self) -> ParamOverrides {
        ParamOverrides {
            emissivity: self.emissivity,
            object_distance_m: self.distance_m,
            reflected_c: self.reflected_c,
            atmosphere_c: self.atmosphere_c,
            relative_humidity: self.humidity_percent.map(|p| p / 100.0),
        }
    }
}

/// What an analyzer needs to know about its camera and gateway besides `[analysis]`:
/// the build context of the agent's camera analyzer.
#[derive(Debug, Clone, Copy)]
pub struct CameraContext<'a> {
    /// Site id.
    pub site: &'a str,
    /// Gateway id.
    pub gateway: &'a str,
    /// Camera id.
    pub camera: &'a str,
    /// The asset the camera looks at (when it does not patrol).
    pub asset: Option<&'a str>,
    /// Corrections to the camera's radiometric parameters.
    pub radiometry: &'a RadiometryOverrides,
    /// Regions analysed (the whole frame when empty).
    pub rois: &'a [RegionOfInterest],
    /// The patrol's stops, when the camera patrols.
    pub presets: Option<&'a [PresetConfig]>,
}
