//! The component detector's health, as `/status` and `/metrics` report it (the
//! agent's status board reads it; `chitti_agent::health::detector` is this module).

use chitti_common::finding::ModelIdentity;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The detector's state as `/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectorState {
    /// No `[detector]` enabled: thresholds alone, by choice.
    Disabled,
    /// A model runs.
    Running(ModelIdentity),
    /// A model should run but cannot: thresholds alone, with the reason.
    Degraded(String),
}

/// The detector's health, shared by every camera's detector, `/status` and `/metrics`.
#[derive(Debug)]
pub struct DetectorHealth {
    state: Mutex<DetectorState>,
    runs: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    last_inference_us: AtomicU64,
}

impl DetectorHealth {
    /// A health that starts in `state`.
    pub fn new(state: DetectorState) -> Self {
        Self {
            state: Mutex::new(state),
            runs: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            last_inference_us: AtomicU64::new(0),
        }
    }

    /// The current state.
    pub fn state(&self) -> DetectorState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `/status`'s `detector`: `disabled`, `ok (<name> <version>)` or
    /// `degraded (<reason>)`.
    pub fn label(&self) -> String {
        match self.state() {
            DetectorState::Disabled => "disabled".into(),
            DetectorState::Running(m) => format!("ok ({} {})", m.name, m.version),
            DetectorState::Degraded(why) => format!("degraded ({why})"),
        }
    }

    /// The model in use, while one runs.
    pub fn model(&self) -> Option<ModelIdentity> {
        match self.state() {
            DetectorState::Running(m) => Some(m),
            _ => None,
        }
    }

    /// True once degraded.
    pub fn is_degraded(&self) -> bool {
        matches!(self.state(), DetectorState::Degraded(_))
    }

    /// Marks a model as running, unless something already degraded (a degraded
    /// camera keeps the whole agent's detector degraded: it is what needs fixing).
    pub fn set_running(&self, model: ModelIdentity) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*state, DetectorState::Degraded(_)) {
            *state = DetectorState::Running(model);
        }
    }

    /// Marks `model` as running even after a degradation: every camera now runs a
    /// freshly loaded session of it (the model switch, after a new model or a roll
    /// back).
    pub fn reset_running(&self, model: ModelIdentity) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = DetectorState::Running(model);
    }

    /// Degrades with `reason`, logged once (the first reason is kept).
    pub fn degrade(&self, reason: String) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, DetectorState::Degraded(_)) {
            return;
        }
        tracing::error!(reason = %reason,
            "component detector degraded: continuing on thermal thresholds alone");
        *state = DetectorState::Degraded(reason);
    }

    /// Counts a completed inference and its duration.
    pub fn record_run(&self, took: std::time::Duration) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.last_inference_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts a failed inference.
    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a frame replaced in the mailbox before the detector took it.
    pub fn record_skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Completed inferences.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Failed inferences.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Frames submitted for detection but replaced by a newer one first.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Duration of the last completed detection (pre-processing, inference, decode),
    /// seconds.
    pub fn last_inference_seconds(&self) -> f64 {
        self.last_inference_us.load(Ordering::Relaxed) as f64 / 1e6
    }
}
