//! The `seq_replay` source's configuration (`[camera.source] kind = "seq_replay"`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A recorded sequence to replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeqReplaySourceConfig {
    /// The `.seq`/`.csq` (or any FLIR file).
    pub path: PathBuf,
    /// Replay speed: 2 plays twice as fast as recorded.
    #[serde(default = "one")]
    pub speed: f64,
    /// Frame rate when the file carries no times.
    #[serde(default = "default_fps")]
    pub fallback_fps: f64,
    /// Start again at the end.
    #[serde(default)]
    pub repeat: bool,
    /// Produce frames as fast as the pipeline takes them.
    #[serde(default)]
    pub unpaced: bool,
}

fn one() -> f64 {
    1.0
}

fn default_fps() -> f64 {
    30.0
}
