//! `[camera.source]`: which source a camera's frames come from, and the build step that
//! starts it. Each kind's settings are in its own folder's `config.rs`.

use super::rjpeg_dir::config::RjpegDirSourceConfig;
use super::rjpeg_dir::RjpegDirSource;
use super::seq_replay::config::SeqReplaySourceConfig;
use super::seq_replay::SeqReplay;
use super::simulated::config::SimulatedSourceConfig;
use super::simulated::{Scene, SimulatedCamera};
use super::v4l2::config::V4l2SourceToml;
use super::{FrameSender, SourceError};
use crate::shutdown::Shutdown;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::thread::JoinHandle;

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

/// What a source needs besides its own settings.
#[derive(Debug, Clone, Copy)]
pub struct SourceContext<'a> {
    /// The camera's id.
    pub camera: &'a str,
    /// Where a source keeps its state (the watched folder's processed-file registry).
    pub state_dir: &'a Path,
}

impl SourceConfig {
    /// Starts the source on its own thread; it sends into `sender` until `stop` is
    /// triggered (or, for a finite source, until it has sent everything).
    pub fn spawn(
        &self,
        cx: SourceContext<'_>,
        sender: FrameSender,
        stop: Shutdown,
    ) -> Result<JoinHandle<()>, SourceError> {
        Ok(match self {
            Self::Simulated(sim) => {
                let scene = Scene::new(SimulatedCamera::from_config(cx.camera, sim))
                    .map_err(SourceError::Scene)?;
                super::simulated::spawn(scene, sender, stop).map_err(SourceError::Thread)?
            }
            Self::V4l2(v) => {
                if !v.device.exists() {
                    tracing::warn!(camera = %cx.camera, device = %v.device.display(),
                        "camera not present yet; the source keeps trying to open it");
                }
                super::v4l2::spawn(v.source(cx.camera), v.opener(), sender, stop)
            }
            Self::SeqReplay(r) => SeqReplay {
                camera: cx.camera.to_string(),
                path: r.path.clone(),
                speed: r.speed,
                fallback_fps: r.fallback_fps,
                repeat: r.repeat,
                unpaced: r.unpaced,
            }
            .spawn(sender, stop)
            .map_err(SourceError::Thread)?,
            Self::RjpegDir(dir) => {
                let registry = cx.state_dir.join(format!("processed-{}.log", cx.camera));
                RjpegDirSource::new(cx.camera, dir, &registry)?
                    .spawn(sender, stop)
                    .map_err(SourceError::Thread)?
            }
        })
    }
}
