//! `[camera.source]`: which source a camera's frames come from; each kind's settings
//! are in its own file.

pub mod rjpeg_dir;
pub mod seq_replay;
pub mod simulated;
pub mod v4l2;

pub use rjpeg_dir::RjpegDirSourceConfig;
pub use seq_replay::SeqReplaySourceConfig;
pub use simulated::{SceneKind, SimulatedSourceConfig};
pub use v4l2::{PlanckConfig, V4l2Mode, V4l2SourceToml};

use serde::{Deserialize, Serialize};

/// Where a camera's frames come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Deterministic synthetic scenes.
    Simulated(SimulatedSourceConfig),
    /// A watched folder of FLIR files.
    RjpegDir(RjpegDirSourceConfig),
    /// A V4L2 (USB video) camera.
    V4l2(V4l2SourceToml),
    /// A recorded sequence played at its frame rate.
    SeqReplay(SeqReplaySourceConfig),
}
