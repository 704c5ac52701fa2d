//! The `v4l2` source's configuration (`[camera.source] kind = "v4l2"`), as written in
//! the TOML file; the agent's `V4l2SourceConfig` is what the running source reads.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a V4L2 camera's stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum V4l2Mode {
    /// `Y16` raw detector counts, turned into °C with `planck` and `radiometry`.
    RadiometricCounts,
    /// `Y16` counts where kelvin = count × `kelvin_per_count`.
    TemperatureLinear,
    /// Rendered 8-bit video (`YUYV`/`MJPG`): detection only, findings qualitative. A
    /// FLIR T560's own USB video is this kind.
    Preview,
}

/// The camera's Planck calibration (from its R-JPEGs: `exiftool -Planck*`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanckConfig {
    /// R1.
    pub r1: f64,
    /// R2.
    pub r2: f64,
    /// B.
    pub b: f64,
    /// F.
    pub f: f64,
    /// O (counts).
    pub o: f64,
}

/// A V4L2 camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2SourceToml {
    /// Device node; prefer a stable `/dev/v4l/by-id/…` link or the udev name.
    pub device: PathBuf,
    /// Preferred width.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Preferred height.
    #[serde(default = "default_height")]
    pub height: u32,
    /// Highest wanted frame rate.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// What the stream carries.
    pub mode: V4l2Mode,
    /// Kelvin per count, for `temperature_linear` (often 0.01 or 0.04).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kelvin_per_count: Option<f64>,
    /// Planck calibration, for `radiometric_counts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planck: Option<PlanckConfig>,
    /// Upper saturation limit, °C.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saturated_max_c: Option<f64>,
    /// First reopen delay after an unplug, ms (doubles up to `reconnect_max_ms`).
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    /// Longest reopen delay, ms.
    #[serde(default = "default_v4l2_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// No frame for this long: the stream is treated as lost and reopened.
    #[serde(default = "default_stall_s")]
    pub stall_timeout_s: u64,
}

fn default_width() -> u32 {
    640
}

fn default_height() -> u32 {
    480
}

fn default_fps() -> f64 {
    30.0
}

fn default_reconnect_min() -> u64 {
    500
}

fn default_v4l2_reconnect_max() -> u64 {
    30_000
}

fn default_stall_s() -> u64 {
    10
}
