//! The component detector's configuration (`[detector]`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The layout the configuration asks for: found from the output shape and metadata,
/// or forced (for a model whose shape fits two layouts and that says nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutChoice {
    /// From the output shape, the class names and the `end2end` key.
    #[default]
    Auto,
    /// `[1, 4+nc, N]`.
    Yolov8,
    /// `[1, N, 5+nc]`.
    Yolov5,
    /// `[1, K, 6]`.
    End2end,
}

/// The component detector: a YOLO-family ONNX model run through ONNX Runtime
/// (see the `detector` module header). Without it, or when its model or
/// library is missing or broken, findings come from thermal thresholds alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Run the detector.
    #[serde(default)]
    pub enabled: bool,
    /// The `.onnx` model (required when enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// The ONNX Runtime library (`libonnxruntime.so.*`); else `ORT_DYLIB_PATH`, else
    /// `libonnxruntime.so*` next to the executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<PathBuf>,
    /// Detections per second per camera on streams (the latest frame each time).
    #[serde(default = "default_detector_rate")]
    pub rate_hz: f64,
    /// Lowest score kept, 0..1.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Class-wise NMS: boxes of one class overlapping more than this are one object.
    #[serde(default = "default_iou")]
    pub iou: f64,
    /// Most detections per frame.
    #[serde(default = "default_max_detections")]
    pub max_detections: usize,
    /// ONNX Runtime threads per camera (worker spinning is always off).
    #[serde(default = "default_intra_threads")]
    pub intra_threads: usize,
    /// Model input `[width, height]` for models with a dynamic input size (default:
    /// the model's `imgsz` metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<[u32; 2]>,
    /// Output layout: `auto` (from the output shape and metadata), `yolov8`, `yolov5`
    /// or `end2end`.
    #[serde(default)]
    pub layout: LayoutChoice,
}

crate::defaults_from_serde!(DetectorConfig);

fn default_detector_rate() -> f64 {
    2.0
}

fn default_confidence() -> f64 {
    0.25
}

fn default_iou() -> f64 {
    0.45
}

fn default_max_detections() -> usize {
    100
}

fn default_intra_threads() -> usize {
    1
}
