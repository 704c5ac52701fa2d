//! Frame sources: where radiometric frames come from.
//!
//! Every source runs on its own OS thread (camera capture, file parsing and pacing never
//! block an async worker) and hands frames to the analysis stage through a bounded
//! channel with an explicit full-buffer policy: a source never waits for the pipeline.
//! When the channel is full the frame is dropped and counted in the camera's
//! [`CameraHealth`], which `/status` and `/telemetry` report. File sources are the
//! exception: a file is never dropped, the source waits (the file stays on disk, so
//! waiting costs nothing and losing it would lose an inspection).
//!
//! | source | module | what |
//! |---|---|---|
//! | `simulated` | [`simulated`] | deterministic synthetic substation scenes (demo, tests) |
//! | `rjpeg_dir` | [`rjpeg_dir`] | a watched folder of FLIR files (tethered T560, drone SD card, FTP drop) |
//! | `seq_replay` | [`seq_replay`] | a recorded `.seq`/`.csq` played at its frame rate (tracked like a stream) |
//! | `v4l2` | [`v4l2`] | a live V4L2 (USB video) camera: `Y16` counts, or rendered preview video |

pub mod config;
pub mod rjpeg_dir;
pub mod seq_replay;
pub mod simulated;
pub mod v4l2;

use crate::health::CameraHealth;
use chitti_common::finding::FindingSource;
use chitti_common::image::RawFrame;
use chitti_common::radiometry::RadiometricParams;
use chrono::{DateTime, FixedOffset};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One frame from a source, ready for analysis.
#[derive(Debug, Clone)]
pub struct SourceFrame {
    /// Camera id (from the configuration).
    pub camera: String,
    /// Per-camera frame counter, from 0 at source start.
    pub seq: u64,
    /// When the frame was captured, by the camera's clock.
    pub captured_at: DateTime<FixedOffset>,
    /// Stream or file.
    pub source: FindingSource,
    /// The pixels and how to read them.
    pub payload: FramePayload,
    /// The file the frame came from, for file sources: its evidence is the original file.
    pub file: Option<Arc<SourceFile>>,
    /// Pan-tilt preset and asset when the camera is on patrol.
    pub position: Option<PresetPosition>,
}

/// The pixels of a frame.
#[derive(Debug, Clone)]
pub enum FramePayload {
    /// Raw detector counts and the camera parameters that turn them into °C.
    Radiometric(RadiometricFrame),
    /// Temperature-linear counts: kelvin = count × resolution, no Planck parameters.
    TemperatureLinear(TemperatureLinearFrame),
    /// Rendered 8-bit video (palette, automatic gain): no temperatures. Findings from it
    /// are qualitative, detection only.
    Preview(PreviewFrame),
}

impl FramePayload {
    /// True when the pixels carry temperatures (radiometric or temperature-linear);
    /// false for preview video, whose findings are qualitative.
    pub fn is_quantitative(&self) -> bool {
        !matches!(self, Self::Preview(_))
    }
}

/// Temperature-linear counts (a `Y16` stream whose counts are kelvin × a fixed factor).
#[derive(Debug, Clone)]
pub struct TemperatureLinearFrame {
    /// Counts, row-major.
    pub counts: RawFrame,
    /// Kelvin per count (e.g. 0.01 or 0.04; per camera and range setting).
    pub kelvin_per_count: f64,
}

impl TemperatureLinearFrame {
    /// Kelvin of one count.
    pub fn kelvin(&self, count: u16) -> f64 {
        f64::from(count) * self.kelvin_per_count
    }

    /// °C of one count.
    pub fn celsius(&self, count: u16) -> f64 {
        self.kelvin(count) - chitti_common::radiometry::KELVIN_OFFSET
    }
}

/// A frame of rendered preview video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewFrame {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// The pixels.
    pub pixels: PreviewPixels,
}

/// How a preview frame's pixels are held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewPixels {
    /// 8-bit luma, row-major, `width × height` bytes (from `YUYV`).
    Luma(Vec<u8>),
    /// The JPEG as the camera sent it (from `MJPG`; not decoded here).
    Jpeg(Vec<u8>),
}

/// Raw counts with their radiometric parameters.
#[derive(Debug, Clone)]
pub struct RadiometricFrame {
    /// Counts, row-major.
    pub raw: RawFrame,
    /// Parameters as the camera (or the configuration) gives them, before overrides.
    pub params: RadiometricParams,
    /// The camera's upper saturation limit, °C, when known.
    pub saturated_max_c: Option<f64>,
}

/// A FLIR file a frame was read from.
#[derive(Debug)]
pub struct SourceFile {
    /// Where it was found.
    pub path: PathBuf,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// The bytes (the evidence of any finding in it).
    pub bytes: Arc<Vec<u8>>,
    /// Frame index within the file (sequences).
    pub frame_index: usize,
    /// Counts the file's frames down to "all findings stored".
    pub done: Arc<FileDone>,
}

/// Completion of a file: once every frame of it has been analysed and its findings are
/// durably in the outbox, the callback runs (the folder source records the file as
/// processed). Frames without findings finish right after analysis.
pub struct FileDone {
    remaining: std::sync::atomic::AtomicUsize,
    on_done: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for FileDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDone")
            .field("remaining", &self.remaining.load(Ordering::SeqCst))
            .finish()
    }
}

impl FileDone {
    /// A file of `frames` frames; `on_done` runs when the last one finishes.
    pub fn new(frames: usize, on_done: impl FnOnce() + Send + 'static) -> Self {
        Self {
            remaining: std::sync::atomic::AtomicUsize::new(frames),
            on_done: std::sync::Mutex::new(Some(Box::new(on_done))),
        }
    }

    /// One frame is finished.
    pub fn frame_finished(&self) {
        if self.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
            let callback = self
                .on_done
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(callback) = callback {
                callback();
            }
        }
    }
}

/// Where a patrolling camera is pointed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetPosition {
    /// Preset id from the configuration.
    pub preset: String,
    /// Asset the preset looks at.
    pub asset: Option<String>,
}

/// What happened to an offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for analysis.
    Queued,
    /// The pipeline is behind: dropped and counted.
    Dropped,
    /// The pipeline has shut down: the source should stop.
    Closed,
}

/// The sending end of a source's bounded channel, with the camera's health counters.
#[derive(Debug, Clone)]
pub struct FrameSender {
    tx: tokio::sync::mpsc::Sender<SourceFrame>,
    health: Arc<CameraHealth>,
    position: Option<crate::patrol::PatrolPosition>,
}

impl FrameSender {
    /// Wraps a channel sender.
    pub fn new(tx: tokio::sync::mpsc::Sender<SourceFrame>, health: Arc<CameraHealth>) -> Self {
        Self {
            tx,
            health,
            position: None,
        }
    }

    /// Stamps every frame with where the patrol head is dwelling (none while it moves).
    pub fn with_position(mut self, position: crate::patrol::PatrolPosition) -> Self {
        self.position = Some(position);
        self
    }

    fn stamp(&self, frame: &mut SourceFrame) {
        if let Some(position) = &self.position {
            frame.position = position.current().map(|spot| PresetPosition {
                preset: spot.preset,
                asset: spot.asset,
            });
        }
    }

    /// The camera's health counters.
    pub fn health(&self) -> &Arc<CameraHealth> {
        &self.health
    }

    /// Live-stream policy: queue the frame if there is room, otherwise drop and count it.
    pub fn offer(&self, mut frame: SourceFrame) -> Offer {
        use tokio::sync::mpsc::error::TrySendError;
        self.stamp(&mut frame);
        match self.tx.try_send(frame) {
            Ok(()) => {
                self.health.record_frame();
                Offer::Queued
            }
            Err(TrySendError::Full(_)) => {
                self.health.record_drop();
                Offer::Dropped
            }
            Err(TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// File policy: wait for room (the caller's thread blocks; it is a source thread,
    /// never an async worker). Returns `false` when the pipeline has shut down.
    pub fn send_blocking(&self, mut frame: SourceFrame) -> bool {
        self.stamp(&mut frame);
        if self.tx.blocking_send(frame).is_ok() {
            self.health.record_frame();
            true
        } else {
            false
        }
    }
}

/// Why a source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A folder the source needs is unusable.
    #[error("{what} {path}: {source}")]
    Folder {
        /// Which folder.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file watcher could not start.
    #[error("cannot watch {path}: {source}")]
    Watch {
        /// The folder.
        path: PathBuf,
        /// The watcher's error.
        source: notify::Error,
    },
    /// The processed-file registry could not be opened.
    #[error("processed-file registry {path}: {reason}")]
    Registry {
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Scene parameters are unusable.
    #[error("{0}")]
    Scene(String),
    /// The source's thread could not be started.
    #[error("cannot start the source thread: {0}")]
    Thread(std::io::Error),
}

pub use chitti_common::agent_config::nominal_camera_params;
