//! The detector on its own thread, for live streams.

use super::onnx::OnnxDetector;
use crate::{Detection, Detector};
use chitti_common::finding::ModelIdentity;
use chitti_common::image::TemperatureImage;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An [`OnnxDetector`] on a thread of its own, fed through a one-frame mailbox.
///
/// - **Never blocks the caller.** [`Detector::detect`] (called by the analysis thread
///   for every frame, at up to 30 Hz) copies the frame into the mailbox at most
///   `rate_hz` times a second, replacing a frame the detector has not taken yet
///   (latest frame wins; each replaced frame is counted as skipped), and returns at
///   once with the most recent *completed* detections.
/// - **Staleness.** Those detections come from an earlier frame: the one submitted up
///   to `1 / rate_hz` plus one inference time ago (at 2 Hz and 20 ms inference, at
///   most ~0.52 s). On a fixed camera the components do not move, so that is exact
///   enough; on a moving (handheld, drone) camera boxes lag the picture by that much,
///   and after a patrol move the first frames at the new preset may still carry the
///   old preset's boxes for up to one period. Detections older than
///   `max(3 / rate_hz, 3 × the last inference time)` are not returned at all (a
///   stalled detector reports nothing rather than old boxes), nor are those of a frame
///   of another size.
/// - **Failure.** Three failed inferences in a row, or a panic inside the runtime, stop
///   detection and degrade the shared health; `detect` then returns nothing and the
///   camera runs on thresholds alone, until another model's session is handed in.
/// - **Another model** ([`SessionSlot::replace`](super::SessionSlot::replace), from the
///   [`ModelSwitch`](super::ModelSwitch)): the thread takes the new session between two
///   frames — no frame sees half of each — and drops the old one.
pub struct BackgroundDetector {
    shared: Arc<Shared>,
    period: Duration,
    last_submit: Option<Instant>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for BackgroundDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundDetector")
            .field("model", &*lock(&self.shared.identity))
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

struct Shared {
    mailbox: Mutex<Mailbox>,
    wake: Condvar,
    latest: Mutex<Option<Completed>>,
    stopped: AtomicBool,
    health: Option<Arc<super::DetectorHealth>>,
    identity: Mutex<ModelIdentity>,
}

#[derive(Default)]
struct Mailbox {
    frame: Option<TemperatureImage>,
    /// Another model's session, taken before the next frame.
    replacement: Option<OnnxDetector>,
    stop: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl super::SessionSlot for Shared {
    fn replace(&self, detector: OnnxDetector) {
        lock(&self.mailbox).replacement = Some(detector);
        self.wake.notify_one();
    }
}

struct Completed {
    detections: Vec<Detection>,
    frame: (u32, u32),
    at: Instant,
    took: Duration,
}

impl BackgroundDetector {
    /// Starts `detector` on a thread named `detector-<camera>`, detecting at most
    /// `rate_hz` frames a second.
    pub fn spawn(detector: OnnxDetector, rate_hz: f64, camera: &str) -> std::io::Result<Self> {
        let rate_hz = if rate_hz.is_finite() && rate_hz > 0.0 {
            rate_hz
        } else {
            1.0
        };
        let shared = Arc::new(Shared {
            mailbox: Mutex::new(Mailbox::default()),
            wake: Condvar::new(),
            latest: Mutex::new(None),
            stopped: AtomicBool::new(false),
            health: detector.health_handle(),
            identity: Mutex::new(detector.identity().clone()),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("detector-{camera}"))
                .spawn(move || work(detector, &shared))?
        };
        Ok(Self {
            shared,
            period: Duration::from_secs_f64(1.0 / rate_hz),
            last_submit: None,
            thread: Some(thread),
        })
    }

    /// Where another model's session is handed in (the thread takes it between two
    /// frames).
    pub fn slot(&self) -> std::sync::Weak<dyn super::SessionSlot> {
        let shared: Arc<dyn super::SessionSlot> = self.shared.clone();
        Arc::downgrade(&shared)
    }

    /// True once the thread has stopped (after failures).
    pub fn has_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    /// Hands `image` to the thread now, whatever the rate (replacing a frame not yet
    /// taken). For tests and benchmarks; the pipeline uses [`Detector::detect`].
    pub fn submit(&mut self, image: &TemperatureImage) {
        self.last_submit = Some(Instant::now());
        let mut mailbox = self
            .shared
            .mailbox
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if mailbox.frame.replace(image.clone()).is_some() {
            if let Some(h) = &self.shared.health {
                h.record_skip();
            }
        }
        drop(mailbox);
        self.shared.wake.notify_one();
    }

    /// The most recent completed detections for a frame of `frame` size, unless stale.
    pub fn latest(&self, frame: (u32, u32)) -> Vec<Detection> {
        let latest = self.shared.latest.lock().unwrap_or_else(|e| e.into_inner());
        match latest.as_ref() {
            Some(c) if c.frame == frame && c.at.elapsed() <= self.max_age(c.took) => {
                c.detections.clone()
            }
            _ => Vec::new(),
        }
    }

    /// Completed detections so far, with when they completed (for tests polling for
    /// the first result).
    pub fn completed_at(&self) -> Option<Instant> {
        self.shared
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.at)
    }

    fn max_age(&self, took: Duration) -> Duration {
        (self.period * 3).max(took * 3)
    }
}

impl Detector for BackgroundDetector {
    fn detect(&mut self, image: &TemperatureImage) -> Vec<Detection> {
        if self.has_stopped() {
            return Vec::new();
        }
        let due = self.last_submit.is_none_or(|t| t.elapsed() >= self.period);
        if due {
            self.submit(image);
        }
        self.latest((image.width(), image.height()))
    }

    fn model(&self) -> Option<ModelIdentity> {
        (!self.has_stopped()).then(|| lock(&self.shared.identity).clone())
    }
}

impl Drop for BackgroundDetector {
    fn drop(&mut self) {
        self.shared
            .mailbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            // At most one inference to finish.
            let _ = t.join();
        }
    }
}

fn work(mut detector: OnnxDetector, shared: &Shared) {
    loop {
        let frame = {
            let mut mailbox = lock(&shared.mailbox);
            loop {
                if mailbox.stop {
                    return;
                }
                if let Some(next) = mailbox.replacement.take() {
                    // Between two frames: the next one runs on the new session.
                    *lock(&shared.identity) = next.identity().clone();
                    detector = next;
                    *lock(&shared.latest) = None;
                    shared.stopped.store(false, Ordering::Release);
                }
                // A failed session waits for another (or the end), taking no frames.
                if !detector.has_failed() {
                    if let Some(frame) = mailbox.frame.take() {
                        break frame;
                    }
                }
                mailbox = shared.wake.wait(mailbox).unwrap_or_else(|e| e.into_inner());
            }
        };
        let started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| detector.detect_guarded(&frame)));
        let detections = match result {
            Ok(d) => d,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                detector.fail(format!("the detector panicked: {why}"));
                Vec::new()
            }
        };
        if detector.has_failed() {
            shared.stopped.store(true, Ordering::Release);
            *lock(&shared.latest) = None;
            continue;
        }
        *lock(&shared.latest) = Some(Completed {
            detections,
            frame: (frame.width(), frame.height()),
            at: Instant::now(),
            took: started.elapsed(),
        });
    }
}
