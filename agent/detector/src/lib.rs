//! The component detector runtime: a YOLO-family ONNX model run through ONNX Runtime,
//! behind the analysis chain's [`Detector`] trait.
//!
//! ```text
//! TemperatureImage ─detector_input::model_input (unit mapping fused into the letterbox)─▶ [1,C,H,W] f32
//!     ─ONNX Runtime (ort, library loaded at run time)─▶ output tensor
//!     ─decode: layout, threshold, class-wise NMS, inverse letterbox─▶ Vec<Detection>
//! ```
//!
//! - [`OnnxDetector`]: one model in one ONNX Runtime session, synchronous
//!   ([`OnnxDetector::detect_frame`], or the [`Detector`] impl for stills such as
//!   `chitti-agent inspect` and watched-folder files). Loading reads the model's
//!   metadata, fixes the input size and channels, and runs the model once on a blank
//!   input to learn (and check) its output layout, so a model the runtime cannot
//!   decode fails at load, not at the first frame.
//! - [`BackgroundDetector`]: the same on its own thread for live streams, fed through
//!   a latest-frame-wins mailbox at `rate_hz`; its `detect` never waits for inference
//!   and returns the most recent completed detections (see its docs for staleness).
//! - [`DetectorHealth`]: what `/status` (`detector`) and `/metrics` report: `disabled`,
//!   `ok (<model> <version>)`, or `degraded (<reason>)` when the library, the model or
//!   inference failed. A degraded detector finds nothing and the agent carries on with
//!   thermal thresholds alone: detection adds context to findings, it never gates them.
//! - [`camera_detector`]: what the topology calls per camera.
//!
//! Preprocessing is `chitti_common::detector_input` and nothing else, so training
//! (`chitti-agent synth` writes the same unit image) and deployment see one mapping.

mod background;
pub mod config;
pub mod decode;
mod detection;
pub mod health;
pub mod metadata;
mod onnx;
pub mod runtime;
pub mod selftest;
mod switch;

pub use background::BackgroundDetector;
pub use config::{DetectorConfig, LayoutChoice};
pub use decode::{DecodeSettings, Layout, OutputLayout};
pub use detection::{Detection, Detector, NoDetector};
pub use health::{DetectorHealth, DetectorState};
pub use onnx::{ModelInput, ModelOutput, OnnxDetector};
pub use runtime::LibraryOrigin;
pub use switch::{ModelChoice, ModelSwitch, SessionSlot, StillDetector};

use std::path::PathBuf;

use std::sync::Arc;

/// Why the detector cannot load or run. Every message names what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// No library configured, no `ORT_DYLIB_PATH`, none next to the executable.
    #[error(
        "no onnx runtime library: set detector.library or ORT_DYLIB_PATH, or put \
         libonnxruntime.so next to the executable in {searched} \
         (models/fetch-onnxruntime.sh fetches one)"
    )]
    LibraryMissing {
        /// The folder searched.
        searched: String,
    },
    /// The configured (or `ORT_DYLIB_PATH`) library file does not exist.
    #[error("onnx runtime library not found at {} (from {origin})", path.display())]
    LibraryNotFound {
        /// The path.
        path: PathBuf,
        /// Where the path came from.
        origin: LibraryOrigin,
    },
    /// The file exists but is not a usable ONNX Runtime (not a shared library, no
    /// `OrtGetApiBase`, older than 1.17).
    #[error("cannot load the onnx runtime library {} (from {origin}): {reason}", path.display())]
    LibraryLoad {
        /// The path.
        path: PathBuf,
        /// Where the path came from.
        origin: LibraryOrigin,
        /// ONNX Runtime's or the loader's words.
        reason: String,
    },
    /// Another library file is already loaded in this process.
    #[error(
        "onnx runtime is already loaded from {} in this process; cannot also load {}",
        loaded.display(),
        requested.display()
    )]
    LibraryConflict {
        /// The loaded file.
        loaded: PathBuf,
        /// The file asked for.
        requested: PathBuf,
    },
    /// ONNX Runtime's environment could not be created.
    #[error("cannot start onnx runtime: {0}")]
    Environment(String),
    /// The model file cannot be read.
    #[error("model file {} is unreadable: {source}", path.display())]
    ModelUnreadable {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// ONNX Runtime could not load the model (not ONNX, truncated, unsupported ops).
    #[error("onnx runtime rejected the model {}: {reason}", path.display())]
    ModelRejected {
        /// The path.
        path: PathBuf,
        /// ONNX Runtime's words.
        reason: String,
    },
    /// The model loads but is not a detector this runtime can feed (inputs, types,
    /// task, sizes, metadata).
    #[error("model {}: {reason}", path.display())]
    UnsupportedModel {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The output tensor fits none of the known layouts.
    #[error("model output shape {shape:?} is not a known layout (expected {expected})")]
    UnknownLayout {
        /// The output shape.
        shape: Vec<i64>,
        /// What would have fitted.
        expected: String,
    },
    /// The output tensor fits more than one layout and nothing tells them apart.
    #[error(
        "model output shape {shape:?} is ambiguous: it fits {candidates}; the model has \
         no end2end metadata key, so set detector.layout"
    )]
    AmbiguousLayout {
        /// The output shape.
        shape: Vec<i64>,
        /// The layouts it fits.
        candidates: String,
    },
    /// A run failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The settings cannot work (input size not a multiple of the stride, ...).
    #[error("detector settings: {0}")]
    Settings(String),
}

/// Everything needed to load and run a model, resolved from configuration (or built
/// by hand, as `inspect --model` does).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSettings {
    /// The `.onnx` file.
    pub model: PathBuf,
    /// The ONNX Runtime library (else `ORT_DYLIB_PATH`, else next to the executable).
    pub library: Option<PathBuf>,
    /// Lowest score kept, 0..1.
    pub confidence: f32,
    /// Class-wise NMS IoU threshold.
    pub iou: f32,
    /// Most detections per frame.
    pub max_detections: usize,
    /// ONNX Runtime intra-op threads (spinning is always off).
    pub intra_threads: usize,
    /// Model input `(width, height)` for models with dynamic input sizes (default: the
    /// model's `imgsz`); must match a fixed-size model's own.
    pub input_size: Option<(u32, u32)>,
    /// Output layout: found from the model, or forced.
    pub layout: LayoutChoice,
}

impl DetectorSettings {
    /// Settings for `model` with the configuration's defaults (confidence 0.25, IoU
    /// 0.45, 100 detections, 1 thread).
    pub fn new(model: impl Into<PathBuf>) -> Self {
        let d = DetectorConfig::default();
        Self {
            model: model.into(),
            library: None,
            confidence: d.confidence as f32,
            iou: d.iou as f32,
            max_detections: d.max_detections,
            intra_threads: d.intra_threads,
            input_size: None,
            layout: LayoutChoice::Auto,
        }
    }

    /// The settings of a `[detector]` section; `None` without a model path.
    pub fn from_config(config: &DetectorConfig) -> Option<Self> {
        Some(Self {
            model: config.model.clone()?,
            library: config.library.clone(),
            confidence: config.confidence as f32,
            iou: config.iou as f32,
            max_detections: config.max_detections,
            intra_threads: config.intra_threads,
            input_size: config.input_size.map(|[w, h]| (w, h)),
            layout: config.layout,
        })
    }

    fn decode_settings(&self) -> DecodeSettings {
        DecodeSettings {
            confidence: self.confidence,
            iou: self.iou,
            max_detections: self.max_detections,
        }
    }
}

/// The detector of one camera, as the configuration asks: [`NoDetector`] when
/// detection is disabled or the model cannot load (the health then says why, logged
/// once), a [`BackgroundDetector`] for streams, a synchronous [`OnnxDetector`] for
/// watched folders (each file is one still that deserves its own detections): `stills`
/// says which the camera's frames are.
///
/// With a [`ModelSwitch`], the model is the switch's when it has one (a model the hub
/// rolled out), and the detector registers with it so the model can change while it
/// runs.
///
/// Loads the model: blocking work (file read, session creation, one warm-up run),
/// to be called from a blocking thread.
pub fn camera_detector(
    config: &DetectorConfig,
    camera: &str,
    stills: bool,
    health: &Arc<DetectorHealth>,
    switch: Option<&Arc<ModelSwitch>>,
) -> Box<dyn Detector> {
    if !config.enabled {
        return Box::new(NoDetector);
    }
    let Some(configured) = DetectorSettings::from_config(config) else {
        // Validation requires the model with `enabled`; said here too for callers
        // that built a config by hand.
        health.degrade("detector.model is not set".into());
        return Box::new(NoDetector);
    };
    let mut settings = configured.clone();
    // No model change between reading the choice and registering with the switch.
    let _held = switch.map(|s| s.hold());
    let choice = switch.and_then(|s| s.model_override());
    if let Some(c) = &choice {
        settings.model = c.path.clone();
    }
    let detector = match OnnxDetector::load(&settings) {
        Ok(d) => match &choice {
            Some(c) => d.named(&c.name, &c.version),
            None => d,
        }
        .with_health(Arc::clone(health)),
        Err(err) => {
            health.degrade(err.to_string());
            return Box::new(NoDetector);
        }
    };
    tracing::info!(camera, model = %detector.identity().name,
        version = %detector.identity().version, layout = detector.layout().kind.label(),
        input = ?detector.input_size(), "component detector loaded");
    health.set_running(detector.identity().clone());
    match stills {
        true => {
            let d = StillDetector::new(detector);
            if let Some(s) = switch {
                s.register(configured, d.slot());
            }
            Box::new(d)
        }
        false => match BackgroundDetector::spawn(detector, config.rate_hz, camera) {
            Ok(d) => {
                if let Some(s) = switch {
                    s.register(configured, d.slot());
                }
                Box::new(d)
            }
            Err(err) => {
                health.degrade(format!("cannot start the detector thread: {err}"));
                Box::new(NoDetector)
            }
        },
    }
}
