//! Health the agent reports: camera states and counters, shared between a camera's
//! source thread (which writes) and the status/telemetry publishers (which read).

pub mod config;
pub use chitti_detector::health as detector;
pub mod metrics;

pub use config::HealthConfig;
pub use detector::{DetectorHealth, DetectorState};

use chitti_common::protocol::CameraStatus;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What a camera is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraState {
    /// Not started yet.
    Starting,
    /// Delivering frames.
    Streaming,
    /// Waiting for files (folder sources).
    Watching,
    /// Lost: trying to reopen, with the reason.
    Reconnecting(String),
    /// Delivering rendered preview video although a radiometric mode was configured
    /// (the device offers no radiometric format), with what the device offers: frames
    /// flow, but findings are qualitative.
    PreviewOnly(String),
    /// Finished (a replay reached its end).
    Finished,
    /// Gave up, with the reason.
    Failed(String),
}

impl CameraState {
    /// The state's word in `/status`.
    pub fn label(&self) -> String {
        match self {
            Self::Starting => "starting".into(),
            Self::Streaming => "streaming".into(),
            Self::Watching => "watching".into(),
            Self::Reconnecting(why) => format!("reconnecting: {why}"),
            Self::PreviewOnly(why) => format!("streaming preview: {why}"),
            Self::Finished => "finished".into(),
            Self::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// Counters and state of one camera.
#[derive(Debug)]
pub struct CameraHealth {
    id: String,
    state: Mutex<CameraState>,
    frames: AtomicU64,
    drops: AtomicU64,
    last_frame_at: Mutex<Option<DateTime<Utc>>>,
    // Frames counted at the previous status snapshot, for the fps figure.
    fps_mark: Mutex<(u64, std::time::Instant)>,
}

impl CameraHealth {
    /// A camera that has not started.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            state: Mutex::new(CameraState::Starting),
            frames: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            last_frame_at: Mutex::new(None),
            fps_mark: Mutex::new((0, std::time::Instant::now())),
        }
    }

    /// The camera id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sets the camera's state.
    pub fn set_state(&self, state: CameraState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// The camera's state.
    pub fn state(&self) -> CameraState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts a frame handed to the pipeline.
    pub fn record_frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        *self.last_frame_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Utc::now());
    }

    /// Counts a frame dropped because the pipeline was behind.
    pub fn record_drop(&self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }

    /// Frames handed to the pipeline since start.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Frames dropped since start.
    pub fn drops(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    /// The camera's entry in `/status`; the fps figure covers the time since the
    /// previous snapshot.
    pub fn snapshot(&self) -> CameraStatus {
        let frames = self.frames();
        let fps = {
            let mut mark = self.fps_mark.lock().unwrap_or_else(|e| e.into_inner());
            let elapsed = mark.1.elapsed().as_secs_f64();
            let fps = if elapsed > 0.0 {
                (frames - mark.0) as f64 / elapsed
            } else {
                0.0
            };
            *mark = (frames, std::time::Instant::now());
            fps
        };
        CameraStatus {
            id: self.id.clone(),
            state: self.state().label(),
            fps: (fps * 100.0).round() / 100.0,
            last_frame_at: *self.last_frame_at.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

/// Findings produced since start, by track state.
#[derive(Debug, Default)]
pub struct FindingCounters {
    /// Raised.
    pub raised: AtomicU64,
    /// Updated.
    pub updated: AtomicU64,
    /// Cleared.
    pub cleared: AtomicU64,
}

impl FindingCounters {
    /// Counts one finding.
    pub fn count(&self, state: chitti_common::finding::TrackState) {
        use chitti_common::finding::TrackState;
        let c = match state {
            TrackState::Raised => &self.raised,
            TrackState::Updated => &self.updated,
            TrackState::Cleared => &self.cleared,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Analysis latencies since the last telemetry message.
#[derive(Debug, Default)]
pub struct LatencyWindow(Mutex<Vec<f32>>, Mutex<Option<f64>>);

impl LatencyWindow {
    /// Records one frame's analysis time.
    pub fn record(&self, latency: std::time::Duration) {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: at 30 fps and a 60 s interval there are 1800 samples per camera.
        if v.len() < 100_000 {
            v.push(latency.as_secs_f32() * 1000.0);
        }
    }

    /// The median since the last call, ms, and starts a new window.
    pub fn take_median_ms(&self) -> Option<f64> {
        let mut v = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        if v.is_empty() {
            return None;
        }
        v.sort_by(f32::total_cmp);
        let median = f64::from(v[v.len() / 2]);
        *self.1.lock().unwrap_or_else(|e| e.into_inner()) = Some(median);
        Some(median)
    }

    /// The median of the last completed window, ms (for `/metrics`).
    pub fn last_median_ms(&self) -> Option<f64> {
        *self.1.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the status board reads of the outbox (implemented by
/// [`Outbox`](crate::outbox::Outbox)): a trait, so health does not depend on storage.
pub trait BufferGauge: Send + Sync + std::fmt::Debug {
    /// Depth, bytes, oldest entry and evictions.
    fn status(&self) -> chitti_common::protocol::BufferStatus;
}

/// What the status board reads of the evidence uploader (implemented by its handle): a
/// trait, so health does not depend on the sinks.
pub trait EvidenceGauge: Send + Sync + std::fmt::Debug {
    /// Uploads, failures and since when every attempt has failed.
    fn status(&self) -> chitti_common::protocol::EvidenceUploadStatus;
}

/// Everything `/status` and `/telemetry` report, gathered from the running agent.
#[derive(Debug)]
pub struct StatusBoard {
    /// Cameras.
    pub cameras: Vec<std::sync::Arc<CameraHealth>>,
    /// The outbox, through what it reports.
    pub outbox: std::sync::Arc<dyn BufferGauge>,
    /// Detection model, when one runs (else the detector's, while it runs).
    pub model: Option<chitti_common::finding::ModelIdentity>,
    /// The component detector's health; `None` reads `disabled`.
    pub detector: Option<std::sync::Arc<DetectorHealth>>,
    /// Configuration version applied.
    pub config_version: Option<u32>,
    /// The model update (hub rollouts), when the gateway is managed by the hub.
    pub model_update: Option<tokio::sync::watch::Receiver<chitti_common::protocol::ModelState>>,
    /// The evidence uploader, when evidence goes to the hub.
    pub evidence: Option<std::sync::Arc<dyn EvidenceGauge>>,
    /// Analysis latencies.
    pub latency: std::sync::Arc<LatencyWindow>,
    /// Thermal zones folder (`/sys/class/thermal`).
    pub thermal_zones: std::path::PathBuf,
    /// Folder whose file system holds the outbox.
    pub outbox_path: std::path::PathBuf,
    /// When this agent process started: every status names it, and the Last Will
    /// carries it as its `ts` (see `chitti_common::signing`, replay).
    pub session: chrono::DateTime<Utc>,
    drops_mark: Mutex<u64>,
    // Per camera (frames, drops) at the previous telemetry message, and when.
    camera_marks: Mutex<(Vec<(u64, u64)>, std::time::Instant)>,
}

impl StatusBoard {
    /// A board over the running parts.
    pub fn new(
        cameras: Vec<std::sync::Arc<CameraHealth>>,
        outbox: std::sync::Arc<dyn BufferGauge>,
        latency: std::sync::Arc<LatencyWindow>,
        thermal_zones: std::path::PathBuf,
        outbox_path: std::path::PathBuf,
    ) -> Self {
        Self {
            cameras,
            outbox,
            model: None,
            detector: None,
            config_version: None,
            model_update: None,
            evidence: None,
            latency,
            thermal_zones,
            outbox_path,
            session: Utc::now(),
            drops_mark: Mutex::new(0),
            camera_marks: Mutex::new((Vec::new(), std::time::Instant::now())),
        }
    }

    /// The retained `/status` document.
    pub fn status(&self, online: bool) -> chitti_common::protocol::AgentStatus {
        chitti_common::protocol::AgentStatus {
            online,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            cameras: self.cameras.iter().map(|c| c.snapshot()).collect(),
            buffer: Some(self.outbox.status()),
            model: self
                .model
                .clone()
                .or_else(|| self.detector.as_ref().and_then(|d| d.model())),
            detector: Some(
                self.detector
                    .as_ref()
                    .map_or_else(|| "disabled".to_string(), |d| d.label()),
            ),
            config_version: self.config_version,
            model_update: self.model_update.as_ref().map(|m| m.borrow().clone()),
            evidence: self.evidence.as_ref().map(|e| e.status()),
            ts: Utc::now(),
            session: Some(self.session),
        }
    }

    /// The Last Will, registered with the broker at start: offline, stamped with the
    /// session start so the hub can tell it belongs to this run.
    pub fn last_will(&self) -> chitti_common::protocol::AgentStatus {
        chitti_common::protocol::AgentStatus {
            ts: self.session,
            ..self.status(false)
        }
    }

    /// One `/telemetry` message; frame drops and latency cover the time since the
    /// previous one.
    pub fn telemetry(&self) -> chitti_common::protocol::Telemetry {
        let drops: u64 = self.cameras.iter().map(|c| c.drops()).sum();
        let frame_drops = {
            let mut mark = self.drops_mark.lock().unwrap_or_else(|e| e.into_inner());
            let delta = drops.saturating_sub(*mark);
            *mark = drops;
            delta
        };
        let (cpu, gpu) = read_thermal_zones(&self.thermal_zones);
        let cameras = {
            let mut marks = self.camera_marks.lock().unwrap_or_else(|e| e.into_inner());
            let elapsed = marks.1.elapsed().as_secs_f64();
            let now: Vec<(u64, u64)> = self
                .cameras
                .iter()
                .map(|c| (c.frames(), c.drops()))
                .collect();
            let out = self
                .cameras
                .iter()
                .zip(&now)
                .enumerate()
                .map(|(i, (c, &(frames, drops)))| {
                    let (f0, d0) = marks.0.get(i).copied().unwrap_or((0, 0));
                    chitti_common::protocol::CameraTelemetry {
                        id: c.id().to_string(),
                        fps: if elapsed > 0.0 {
                            ((frames - f0) as f64 / elapsed * 100.0).round() / 100.0
                        } else {
                            0.0
                        },
                        drops: drops - d0,
                    }
                })
                .collect();
            *marks = (now, std::time::Instant::now());
            out
        };
        let outbox = self.outbox.status();
        chitti_common::protocol::Telemetry {
            outbox_depth: Some(outbox.depth),
            outbox_oldest_age_s: outbox
                .oldest_at
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0),
            cameras,
            ts: Utc::now(),
            cpu_temp_c: cpu,
            gpu_temp_c: gpu,
            disk_free_bytes: disk_free_bytes(&self.outbox_path),
            analysis_latency_ms: self.latency.take_median_ms(),
            frame_drops,
        }
    }
}

/// CPU and GPU temperatures from Linux thermal zones (`thermal_zone*/type` and
/// `temp` in m°C): Jetson names them `CPU-therm`/`GPU-therm`, x86 `x86_pkg_temp`, many
/// ARM boards `cpu-thermal`. The hottest matching zone of each kind is reported.
pub fn read_thermal_zones(dir: &std::path::Path) -> (Option<f64>, Option<f64>) {
    let mut cpu: Option<f64> = None;
    let mut gpu: Option<f64> = None;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (None, None);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(kind) = std::fs::read_to_string(path.join("type")).ok() else {
            continue;
        };
        let Some(milli) = std::fs::read_to_string(path.join("temp"))
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok())
        else {
            continue;
        };
        let c = milli / 1000.0;
        let kind = kind.trim().to_ascii_lowercase();
        let slot = if kind.contains("gpu") {
            &mut gpu
        } else if kind.contains("cpu") || kind.contains("x86_pkg") || kind.contains("soc") {
            &mut cpu
        } else {
            continue;
        };
        *slot = Some(slot.map_or(c, |v: f64| v.max(c)));
    }
    (cpu, gpu)
}

/// Free bytes on the file system holding `path`.
pub fn disk_free_bytes(path: &std::path::Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    Some(u64::from(stat.blocks_available()) * u64::from(stat.fragment_size()))
}
