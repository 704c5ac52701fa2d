//! Changing the running model without stopping the cameras (issue #19): each camera's
//! detector registers where a new session can be handed in ([`SessionSlot`]); the
//! [`ModelSwitch`] loads the new model once per camera — all of them or none — and
//! then hands the sessions over, so every camera changes model between two of its
//! frames and no camera is left on a model that did not load.

use super::{DetectorHealth, DetectorSettings, OnnxDetector};
use crate::{Detection, Detector};
use chitti_common::finding::ModelIdentity;
use chitti_common::image::TemperatureImage;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Where a running camera detector takes a new model's session.
pub trait SessionSlot: Send + Sync {
    /// Hands `detector` in; the camera uses it from its next frame on.
    fn replace(&self, detector: OnnxDetector);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A camera registered with the switch: its settings (with its configured model) and
/// its slot.
struct Registered {
    settings: DetectorSettings,
    slot: Weak<dyn SessionSlot>,
}

/// A model the hub rolled out: its file, and the name and version of its manifest
/// (what `/status` reports, whatever the file's own metadata says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChoice {
    /// The `.onnx` file.
    pub path: PathBuf,
    /// The manifest's name.
    pub name: String,
    /// The manifest's version.
    pub version: String,
}

/// The model the detectors run when it is not the configuration's own
/// (`detector.model`), and the running detectors to change when it changes. One per
/// agent process; pipelines rebuilt on a configuration change register again.
pub struct ModelSwitch {
    model: Mutex<Option<ModelChoice>>,
    cameras: Mutex<Vec<Registered>>,
    health: Mutex<Weak<DetectorHealth>>,
    /// Held by a switch and by a detector being built, so that a detector built while
    /// the model changes is either switched or built on the new model, never missed.
    changing: Mutex<()>,
}

impl std::fmt::Debug for ModelSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSwitch")
            .field("model", &*lock(&self.model))
            .field("cameras", &lock(&self.cameras).len())
            .finish()
    }
}

impl ModelSwitch {
    /// A switch whose detectors start on `model` (`None`: the configuration's own).
    pub fn new(model: Option<ModelChoice>) -> Arc<Self> {
        Arc::new(Self {
            model: Mutex::new(model),
            cameras: Mutex::new(Vec::new()),
            health: Mutex::new(Weak::new()),
            changing: Mutex::new(()),
        })
    }

    /// Holds off model changes while a detector is built on [`Self::model_override`]
    /// and registered.
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        lock(&self.changing)
    }

    /// The model detectors load instead of the configured one, if any.
    pub fn model_override(&self) -> Option<ModelChoice> {
        lock(&self.model).clone()
    }

    /// Registers a running camera detector: `settings` with its configured model.
    pub fn register(&self, settings: DetectorSettings, slot: Weak<dyn SessionSlot>) {
        let mut cameras = lock(&self.cameras);
        cameras.retain(|c| c.slot.strong_count() > 0);
        cameras.push(Registered { settings, slot });
    }

    /// The detector health of the running pipeline (what a probation watches).
    pub fn watch_health(&self, health: &Arc<DetectorHealth>) {
        *lock(&self.health) = Arc::downgrade(health);
    }

    /// Why the running detector is degraded, if it is.
    pub fn degraded(&self) -> Option<String> {
        match lock(&self.health).upgrade()?.state() {
            super::DetectorState::Degraded(why) => Some(why),
            _ => None,
        }
    }

    /// Running cameras with a detector.
    pub fn cameras(&self) -> usize {
        lock(&self.cameras)
            .iter()
            .filter(|c| c.slot.strong_count() > 0)
            .count()
    }

    /// Makes every running camera detector run `model` (`None`: each camera's
    /// configured model): loads one session per camera first, and only when every one
    /// loaded hands them over; then new detectors start on it too. The identity of the
    /// model now running (`None` when no camera runs a detector). Blocking work.
    pub fn switch_to(&self, model: Option<ModelChoice>) -> Result<Option<ModelIdentity>, String> {
        let _changing = self.hold();
        let cameras: Vec<(DetectorSettings, Arc<dyn SessionSlot>)> = lock(&self.cameras)
            .iter()
            .filter_map(|c| Some((c.settings.clone(), c.slot.upgrade()?)))
            .collect();
        let health = lock(&self.health).upgrade();
        let mut loaded = Vec::with_capacity(cameras.len());
        for (settings, slot) in cameras {
            let mut settings = settings;
            if let Some(choice) = &model {
                settings.model = choice.path.clone();
            }
            let mut detector = OnnxDetector::load(&settings).map_err(|e| e.to_string())?;
            if let Some(choice) = &model {
                detector = detector.named(&choice.name, &choice.version);
            }
            if let Some(h) = &health {
                detector = detector.with_health(Arc::clone(h));
            }
            loaded.push((detector, slot));
        }
        let identity = loaded.first().map(|(d, _)| d.identity().clone());
        for (detector, slot) in loaded {
            slot.replace(detector);
        }
        if let (Some(h), Some(id)) = (&health, &identity) {
            h.reset_running(id.clone());
        }
        *lock(&self.model) = model;
        Ok(identity)
    }
}

/// A still-image detector (watched folders) whose session can be replaced between
/// two files.
pub struct StillDetector {
    detector: OnnxDetector,
    slot: Arc<StillSlot>,
}

#[derive(Default)]
struct StillSlot {
    pending: Mutex<Option<OnnxDetector>>,
}

impl SessionSlot for StillSlot {
    fn replace(&self, detector: OnnxDetector) {
        *lock(&self.pending) = Some(detector);
    }
}

impl StillDetector {
    /// `detector`, replaceable.
    pub fn new(detector: OnnxDetector) -> Self {
        Self {
            detector,
            slot: Arc::default(),
        }
    }

    /// Where another model's session is handed in.
    pub fn slot(&self) -> Weak<dyn SessionSlot> {
        let slot: Arc<dyn SessionSlot> = self.slot.clone();
        Arc::downgrade(&slot)
    }
}

impl std::fmt::Debug for StillDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StillDetector")
            .field("model", self.detector.identity())
            .finish()
    }
}

impl Detector for StillDetector {
    fn detect(&mut self, image: &TemperatureImage) -> Vec<Detection> {
        if let Some(next) = lock(&self.slot.pending).take() {
            self.detector = next;
        }
        self.detector.detect(image)
    }

    fn model(&self) -> Option<ModelIdentity> {
        self.detector.model()
    }
}
