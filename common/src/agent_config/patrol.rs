//! A camera's patrol as configured (`[camera.patrol]`); the agent's `PatrolPlan` is
//! what the running patrol reads.

use crate::hotspot::RegionOfInterest;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A pan-tilt patrol: go to each preset, let the head settle, analyse while dwelling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatrolConfig {
    /// Serial device of the pan-tilt unit (`/dev/ttyUSB0`, or a udev symlink).
    pub serial: PathBuf,
    /// Baud rate (8N1).
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Pelco-D address of the unit, 1–255.
    #[serde(default = "default_pelco_address")]
    pub address: u8,
    /// Start again after the last preset.
    #[serde(default = "yes")]
    pub repeat: bool,
    /// The tour, in order.
    #[serde(rename = "preset")]
    pub presets: Vec<PresetConfig>,
}

/// One stop of a patrol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetConfig {
    /// Preset id in findings, `[a-z0-9-]{1,64}`.
    pub id: String,
    /// Preset number stored in the pan-tilt unit, 1–255.
    pub pelco_preset: u8,
    /// The asset seen from this preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Time for the head to stop moving, ms (frames are not analysed meanwhile).
    #[serde(default = "default_settle_preset_ms")]
    pub settle_ms: u64,
    /// Time spent analysing at the preset, ms.
    #[serde(default = "default_dwell_ms")]
    pub dwell_ms: u64,
    /// Regions analysed at this preset (the camera's `rois` when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rois: Vec<RegionOfInterest>,
}

fn default_baud() -> u32 {
    9600
}

fn default_pelco_address() -> u8 {
    1
}

fn yes() -> bool {
    true
}

fn default_settle_preset_ms() -> u64 {
    3000
}

fn default_dwell_ms() -> u64 {
    20_000
}
