//! `[camera.source]`: which source a camera's frames come from (schema in
//! `chitti_common::agent_config::sources`), and the build step that starts it.

pub use chitti_common::agent_config::sources::SourceConfig;

use super::rjpeg_dir::RjpegDirSource;
use super::seq_replay::SeqReplay;
use super::simulated::{Scene, SimulatedCamera};
use super::{FrameSender, SourceError};
use crate::shutdown::Shutdown;
use std::path::Path;
use std::thread::JoinHandle;

/// What a source needs besides its own settings.
#[derive(Debug, Clone, Copy)]
pub struct SourceContext<'a> {
    /// The camera's id.
    pub camera: &'a str,
    /// Where a source keeps its state (the watched folder's processed-file registry).
    pub state_dir: &'a Path,
}

/// Starts the source on its own thread; it sends into `sender` until `stop` is
/// triggered (or, for a finite source, until it has sent everything).
pub fn spawn(
    source: &SourceConfig,
    cx: SourceContext<'_>,
    sender: FrameSender,
    stop: Shutdown,
) -> Result<JoinHandle<()>, SourceError> {
    Ok(match source {
        SourceConfig::Simulated(sim) => {
            let scene = Scene::new(SimulatedCamera::from_config(cx.camera, sim))
                .map_err(SourceError::Scene)?;
            super::simulated::spawn(scene, sender, stop).map_err(SourceError::Thread)?
        }
        SourceConfig::V4l2(v) => {
            if !v.device.exists() {
                tracing::warn!(camera = %cx.camera, device = %v.device.display(),
                    "camera not present yet; the source keeps trying to open it");
            }
            super::v4l2::spawn(
                super::v4l2::config::source_for(v, cx.camera),
                super::v4l2::config::opener_for(v),
                sender,
                stop,
            )
        }
        SourceConfig::SeqReplay(r) => SeqReplay {
            camera: cx.camera.to_string(),
            path: r.path.clone(),
            speed: r.speed,
            fallback_fps: r.fallback_fps,
            repeat: r.repeat,
            unpaced: r.unpaced,
        }
        .spawn(sender, stop)
        .map_err(SourceError::Thread)?,
        SourceConfig::RjpegDir(dir) => {
            let registry = cx.state_dir.join(format!("processed-{}.log", cx.camera));
            RjpegDirSource::new(cx.camera, dir, &registry)?
                .spawn(sender, stop)
                .map_err(SourceError::Thread)?
        }
    })
}
