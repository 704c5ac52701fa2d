//! The `simulated` source's configuration (`[camera.source] kind = "simulated"`).

use serde::{Deserialize, Serialize};

/// Which scene a simulated camera shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SceneKind {
    /// Three phases; a connector heats up and cools down, a phase goes cold.
    #[default]
    Substation,
    /// Three healthy phases: nothing should be reported.
    Quiet,
    /// The `substation` fault cycle drawn as the agent's scene generator's components: a
    /// row of three bushings (what `chitti-agent synth` draws and the shipped component
    /// detector was trained on) on a sky-and-ground background; phase B's terminal
    /// heats and cools, phase C loses its load. For running the detector on a live
    /// stream. Each frame is drawn by the generator (optics blur, fixed pattern, its own
    /// sensor noise: `noise_c` does not apply), tens of milliseconds at 640×480, so
    /// keep `fps` low (1–5, the detector's own rate); at least 64×48 pixels.
    Components,
}

/// A simulated radiometric camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedSourceConfig {
    /// Frame width, pixels.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Frame height, pixels.
    #[serde(default = "default_height")]
    pub height: u32,
    /// Frames per second.
    #[serde(default = "default_fps")]
    pub fps: f64,
    /// Seed: the same seed gives the same frames.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Scene time runs this many times faster than wall time (the demo uses 10–60).
    #[serde(default = "one")]
    pub speed: f64,
    /// Which scene.
    #[serde(default)]
    pub scene: SceneKind,
    /// Mean ambient temperature of the scene, °C.
    #[serde(default = "default_ambient")]
    pub ambient_c: f64,
    /// Sensor noise (standard deviation), °C.
    #[serde(default = "default_noise")]
    pub noise_c: f64,
    /// Stop after this many frames (tests); run forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    /// When true, frames are produced as fast as the pipeline takes them (no pacing,
    /// no drops): benchmarks and tests.
    #[serde(default)]
    pub unpaced: bool,
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

fn default_seed() -> u64 {
    1
}

fn one() -> f64 {
    1.0
}

fn default_ambient() -> f64 {
    15.0
}

fn default_noise() -> f64 {
    0.1
}
