//! One model in one ONNX Runtime session.

use super::decode::{decode, Layout};
use super::metadata::{ClassNames, ModelMetadata};
use super::runtime::{runtime, Runtime};
use super::{DetectorError, DetectorHealth, DetectorSettings};
use crate::{Detection, Detector};
use chitti_common::detector_input::{model_input, Letterbox, PAD_VALUE};
use chitti_common::finding::ModelIdentity;
use chitti_common::image::TemperatureImage;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Stride assumed when the model does not say (every YOLO detector's largest).
const DEFAULT_STRIDE: u32 = 32;

/// Failures in a row after which a detector stops trying and degrades: one bad frame
/// is not a broken model, three in a row are.
pub(super) const MAX_CONSECUTIVE_ERRORS: u32 = 3;

/// A frame ready for the model: the NCHW tensor (batch 1) and how the frame sits in it.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// `channels × height × width` values.
    pub tensor: Vec<f32>,
    /// The letterbox that made it.
    pub letterbox: Letterbox,
    /// The frame's `(width, height)`.
    pub frame: (u32, u32),
}

/// What the model answered: its first output.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    /// Output shape.
    pub shape: Vec<i64>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// A YOLO-family detection model loaded into ONNX Runtime.
pub struct OnnxDetector {
    session: Session,
    // Keeps the process's environment alive as long as a session uses it.
    runtime: Arc<Runtime>,
    path: PathBuf,
    input_name: String,
    channels: usize,
    input_width: u32,
    input_height: u32,
    layout: Layout,
    names: ClassNames,
    settings: DetectorSettings,
    identity: ModelIdentity,
    health: Option<Arc<DetectorHealth>>,
    consecutive_errors: u32,
    failed: bool,
}

impl std::fmt::Debug for OnnxDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxDetector")
            .field("path", &self.path)
            .field("identity", &self.identity)
            .field("layout", &self.layout)
            .field(
                "input",
                &(self.channels, self.input_height, self.input_width),
            )
            .finish_non_exhaustive()
    }
}

impl OnnxDetector {
    /// Loads the model of `settings` (loading ONNX Runtime first if this process has
    /// not yet), checks that it is a detector this runtime can feed and decode, and
    /// runs it once on a blank input to learn its output layout.
    pub fn load(settings: &DetectorSettings) -> Result<Self, DetectorError> {
        let path = settings.model.clone();
        let bytes = std::fs::read(&path).map_err(|source| DetectorError::ModelUnreadable {
            path: path.clone(),
            source,
        })?;
        let sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&bytes))
        };
        let runtime = runtime(settings.library.as_deref())?;
        let threads = settings.intra_threads.max(1);
        let rejected = |e: String| DetectorError::ModelRejected {
            path: path.clone(),
            reason: e,
        };
        let session = new_session(&runtime, &bytes, threads).map_err(rejected)?;
        let unsupported = |reason: String| DetectorError::UnsupportedModel {
            path: path.clone(),
            reason,
        };

        let custom = read_custom_metadata(&session);
        let meta = ModelMetadata::parse(&custom).map_err(unsupported)?;
        if let Some(task) = meta.task.as_deref() {
            if task != "detect" {
                return Err(unsupported(format!(
                    "metadata task is {task:?}; only detection models (task \"detect\") run here"
                )));
            }
        }

        let inputs = session.inputs();
        let [input] = inputs else {
            return Err(unsupported(format!(
                "has {} inputs ({}); a detector takes one image",
                inputs.len(),
                inputs
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let input_name = input.name().to_string();
        let dims: Vec<i64> = match input.dtype() {
            ValueType::Tensor { ty, shape, .. } => {
                if *ty != TensorElementType::Float32 {
                    return Err(unsupported(format!(
                        "input {input_name:?} is {ty:?}; only float32 inputs are supported"
                    )));
                }
                shape.iter().copied().collect()
            }
            other => {
                return Err(unsupported(format!(
                    "input {input_name:?} is {other:?}, not a tensor"
                )))
            }
        };
        let [batch, c, h, w] = dims[..] else {
            return Err(unsupported(format!(
                "input {input_name:?} has shape {dims:?}; a detector takes [1, C, H, W]"
            )));
        };
        if batch > 1 {
            return Err(unsupported(format!(
                "input {input_name:?} has batch {batch}; only batch 1 is supported"
            )));
        }
        let channels = if c > 0 {
            c as u32
        } else {
            meta.channels.unwrap_or(3)
        };
        if channels != 1 && channels != 3 {
            return Err(unsupported(format!(
                "input {input_name:?} has {channels} channels; 1 (thermal) or 3 (grey repeated) are supported"
            )));
        }
        let (input_width, input_height) = input_size(settings, &meta, h, w).map_err(unsupported)?;

        let names = meta.names.clone().unwrap_or_default();
        let mut detector = Self {
            session,
            runtime,
            identity: ModelIdentity {
                name: meta.name.clone().unwrap_or_else(|| {
                    path.file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "model".into())
                }),
                version: meta
                    .version
                    .clone()
                    .unwrap_or_else(|| format!("sha256:{}", &sha256[..12])),
                sha256,
            },
            path: path.clone(),
            input_name,
            channels: channels as usize,
            input_width,
            input_height,
            layout: Layout {
                kind: super::OutputLayout::Yolov8,
                classes: 0,
                rows: 0,
            },
            names,
            settings: settings.clone(),
            health: None,
            consecutive_errors: 0,
            failed: false,
        };
        let blank = ModelInput {
            tensor: vec![PAD_VALUE; detector.channels * (input_width * input_height) as usize],
            letterbox: Letterbox::fit(input_width, input_height, input_width, input_height),
            frame: (input_width, input_height),
        };
        let output = detector.infer(&blank)?;
        detector.layout = Layout::detect(
            &output.shape,
            meta.names.as_ref().map(ClassNames::count),
            meta.end2end,
            settings.layout,
        )?;
        Ok(detector)
    }

    /// Reports errors and degradation to `health`.
    pub fn with_health(mut self, health: Arc<DetectorHealth>) -> Self {
        self.health = Some(health);
        self
    }

    pub(super) fn health_handle(&self) -> Option<Arc<DetectorHealth>> {
        self.health.clone()
    }

    /// The same detector reporting `name` and `version` (a registry model's manifest
    /// names it; the file's own metadata may not).
    pub fn named(mut self, name: &str, version: &str) -> Self {
        self.identity.name = name.to_string();
        self.identity.version = version.to_string();
        self
    }

    /// Name, version and SHA-256 of the model.
    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// The class names the model's metadata gives (empty when it has none).
    pub fn class_names(&self) -> &super::metadata::ClassNames {
        &self.names
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ONNX Runtime library in use.
    pub fn library(&self) -> &Path {
        &self.runtime.library
    }

    /// Model input `(width, height)`.
    pub fn input_size(&self) -> (u32, u32) {
        (self.input_width, self.input_height)
    }

    /// Model input channels (1 or 3).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The output layout found at load.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The frame as the model input: unit image, letterbox, channels
    /// ([`model_input`]: the same values as letterboxing `synth`'s unit image).
    pub fn prepare(&self, image: &TemperatureImage) -> ModelInput {
        let letterbox = Letterbox::fit(
            image.width(),
            image.height(),
            self.input_width,
            self.input_height,
        );
        ModelInput {
            tensor: model_input(image, &letterbox, self.channels),
            letterbox,
            frame: (image.width(), image.height()),
        }
    }

    /// Runs the model on `input`.
    pub fn infer(&mut self, input: &ModelInput) -> Result<ModelOutput, DetectorError> {
        let shape = [
            1i64,
            self.channels as i64,
            i64::from(self.input_height),
            i64::from(self.input_width),
        ];
        let tensor = TensorRef::from_array_view((shape, input.tensor.as_slice()))
            .map_err(|e| DetectorError::Inference(format!("input tensor: {e}")))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input_name.as_str() => tensor])
            .map_err(|e| DetectorError::Inference(e.to_string()))?;
        if outputs.len() == 0 {
            return Err(DetectorError::Inference(
                "the model returned no output".into(),
            ));
        }
        let (shape, values) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| DetectorError::Inference(format!("first output: {e}")))?;
        Ok(ModelOutput {
            shape: shape.iter().copied().collect(),
            values: values.to_vec(),
        })
    }

    /// The detections in `output`, in the frame pixels of `input`.
    pub fn decode(
        &self,
        output: &ModelOutput,
        input: &ModelInput,
    ) -> Result<Vec<Detection>, DetectorError> {
        let expected_rows = self.layout.rows as i64;
        let same_shape = match self.layout.kind {
            super::OutputLayout::Yolov8 => output.shape.last() == Some(&expected_rows),
            _ => output.shape.iter().rev().nth(1) == Some(&expected_rows),
        };
        if !same_shape || output.values.len() != self.layout.value_count() {
            return Err(DetectorError::Inference(format!(
                "output shape {:?} differs from the {:?} found at load",
                output.shape, self.layout
            )));
        }
        Ok(decode(
            &output.values,
            &self.layout,
            &self.settings.decode_settings(),
            &input.letterbox,
            input.frame,
            &self.names,
        ))
    }

    /// Pre-processing, inference and decoding of one frame.
    pub fn detect_frame(
        &mut self,
        image: &TemperatureImage,
    ) -> Result<Vec<Detection>, DetectorError> {
        let input = self.prepare(image);
        let output = self.infer(&input)?;
        self.decode(&output, &input)
    }

    /// [`Self::detect_frame`] that never fails: errors are counted and logged, and
    /// [`MAX_CONSECUTIVE_ERRORS`] in a row stop the detector for good and degrade its
    /// health.
    pub(super) fn detect_guarded(&mut self, image: &TemperatureImage) -> Vec<Detection> {
        if self.failed {
            return Vec::new();
        }
        let started = Instant::now();
        match self.detect_frame(image) {
            Ok(found) => {
                self.consecutive_errors = 0;
                if let Some(h) = &self.health {
                    h.record_run(started.elapsed());
                }
                found
            }
            Err(err) => {
                self.consecutive_errors += 1;
                if let Some(h) = &self.health {
                    h.record_error();
                }
                if self.consecutive_errors == 1 {
                    tracing::warn!(model = %self.path.display(), %err, "detection failed");
                }
                if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                    self.fail(format!("{err} ({MAX_CONSECUTIVE_ERRORS} frames in a row)"));
                }
                Vec::new()
            }
        }
    }

    /// Stops for good with `reason`.
    pub(super) fn fail(&mut self, reason: String) {
        self.failed = true;
        match &self.health {
            Some(h) => h.degrade(reason),
            None => tracing::error!(model = %self.path.display(), reason, "detector stopped"),
        }
    }

    /// True once stopped by errors.
    pub fn has_failed(&self) -> bool {
        self.failed
    }
}

/// The synchronous detector (stills): runs the model inside `detect`.
impl Detector for OnnxDetector {
    fn detect(&mut self, image: &TemperatureImage) -> Vec<Detection> {
        self.detect_guarded(image)
    }

    fn model(&self) -> Option<chitti_common::finding::ModelIdentity> {
        (!self.failed).then(|| self.identity.clone())
    }
}

/// A session for the model `bytes`: `threads` intra-op threads, no spinning.
fn new_session(runtime: &Runtime, bytes: &[u8], threads: usize) -> Result<Session, String> {
    let text = |e: ort::Error<_>| e.to_string();
    let builder = Session::builder(&runtime.environment).map_err(|e| e.to_string())?;
    let mut builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(text)?
        .with_intra_threads(threads)
        .map_err(text)?
        .with_inter_threads(1)
        .map_err(text)?
        // Spinning workers steal the core the 30 Hz thresholding runs on; on a shared
        // edge CPU they made a 2-thread session 2-4× slower (ONNX-NOTES.md).
        .with_intra_op_spinning(false)
        .map_err(text)?
        .with_inter_op_spinning(false)
        .map_err(text)?;
    builder.commit_from_memory(bytes).map_err(|e| e.to_string())
}

fn read_custom_metadata(session: &Session) -> BTreeMap<String, String> {
    let Ok(meta) = session.metadata() else {
        return BTreeMap::new();
    };
    meta.custom_keys()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|k| meta.custom(&k).map(|v| (k, v)))
        .collect()
}

/// The input `(width, height)`: a fixed-size model's own (a different configured size
/// is an error), else the configured size, else the model's `imgsz`. Dynamic sizes
/// must be multiples of the model's stride.
fn input_size(
    settings: &DetectorSettings,
    meta: &ModelMetadata,
    h: i64,
    w: i64,
) -> Result<(u32, u32), String> {
    if h > 0 && w > 0 {
        let fixed = (w as u32, h as u32);
        if let Some(want) = settings.input_size {
            if want != fixed {
                return Err(format!(
                    "the model's input is fixed at {}x{}; detector.input_size {}x{} cannot be used",
                    fixed.0, fixed.1, want.0, want.1
                ));
            }
        }
        return Ok(fixed);
    }
    let (width, height) = match (settings.input_size, meta.imgsz) {
        (Some(size), _) => size,
        (None, Some((h, w))) => (w, h),
        (None, None) => {
            return Err(
                "the input size is dynamic and the model has no imgsz metadata: \
                 set detector.input_size = [width, height]"
                    .into(),
            )
        }
    };
    // A fixed axis of a half-dynamic input wins over the configured one.
    let width = if w > 0 { w as u32 } else { width };
    let height = if h > 0 { h as u32 } else { height };
    let stride = meta.stride.unwrap_or(DEFAULT_STRIDE);
    if width % stride != 0 || height % stride != 0 || width == 0 || height == 0 {
        return Err(format!(
            "input size {width}x{height} is not a multiple of the model's stride {stride}"
        ));
    }
    Ok((width, height))
}
