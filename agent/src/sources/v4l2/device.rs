//! Capture devices: the [`CaptureDevice`] seam and the [`V4l2Opener`] that opens a real
//! device (`super::kernel::V4l2Device`, built with the `v4l2` cargo feature).
//!
//! The source loop only sees the trait, so its reconnect logic is tested with a scripted
//! fake; the real device needs a `/dev/videoN` and is not exercised by the unit tests.
//! An agent built without the feature refuses a `v4l2` camera at config validation
//! (`crate::features::V4L2_BUILT_IN`), so the opener's fallback error is a last line of defence.

use super::format::{ActiveFormat, AdvertisedFormat, ChosenFormat, FrameInterval, USUAL_FPS};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One captured buffer, borrowed from the device until the next call.
#[derive(Debug)]
pub struct CapturedFrame<'a> {
    /// The bytes the driver filled (`bytesused`, not the whole mapped buffer).
    pub bytes: &'a [u8],
    /// The driver's capture time on the monotonic clock (time since boot), when the
    /// driver stamps buffers that way (`V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC`).
    pub timestamp: Option<Duration>,
}

/// What went wrong with a device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `set format`, `dequeue buffer` …).
        op: &'static str,
        /// The device node.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The device answered, but not usably (refused format, no first frame …).
    #[error("{path}: {reason}")]
    Unusable {
        /// The device node.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl DeviceError {
    /// A failed system call.
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// An unusable answer.
    pub fn unusable(path: &Path, reason: impl Into<String>) -> Self {
        Self::Unusable {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// True when the device node is gone: unplugged, or not there at all
    /// (`ENODEV`, `ENXIO`, `ENOENT`).
    pub fn is_unplugged(&self) -> bool {
        const ENOENT: i32 = 2;
        const ENXIO: i32 = 6;
        const ENODEV: i32 = 19;
        matches!(self, Self::Io { source, .. }
            if matches!(source.raw_os_error(), Some(ENOENT | ENXIO | ENODEV)))
    }
}

/// A video capture device, opened. One per streaming session: after an error the source
/// closes it and asks its [`DeviceOpener`] for a new one.
pub trait CaptureDevice: Send {
    /// Every format, size and frame interval the device advertises.
    fn formats(&mut self) -> Result<Vec<AdvertisedFormat>, DeviceError>;

    /// Applies a negotiated format (and rate, when it has one) and prepares streaming.
    /// Returns what the driver actually set.
    fn start(&mut self, format: &ChosenFormat) -> Result<ActiveFormat, DeviceError>;

    /// The next frame; `Ok(None)` when none arrived within the device's poll slice (the
    /// caller checks its stop flag and calls again). Blocks at most one poll slice once
    /// streaming, and at most the first-frame timeout before the first frame.
    fn next_frame(&mut self) -> Result<Option<CapturedFrame<'_>>, DeviceError>;

    /// Stops streaming and releases the device. Never fails: errors while closing a
    /// device that is already gone are logged.
    fn close(&mut self);
}

/// Opens a capture device; called again after every lost session.
pub trait DeviceOpener: Send + 'static {
    /// Opens the device.
    fn open(&mut self) -> Result<Box<dyn CaptureDevice>, DeviceError>;
}

impl<F> DeviceOpener for F
where
    F: FnMut() -> Result<Box<dyn CaptureDevice>, DeviceError> + Send + 'static,
{
    fn open(&mut self) -> Result<Box<dyn CaptureDevice>, DeviceError> {
        self()
    }
}

/// Tuning of a V4L2 device (`super::kernel::V4l2Device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V4l2Options {
    /// MMAP buffers to ask the driver for (it may give fewer or more).
    pub buffers: u32,
    /// Longest wait in one [`CaptureDevice::next_frame`] call once streaming.
    pub poll_slice: Duration,
    /// Longest wait for the first frame after stream-on.
    pub first_frame_timeout: Duration,
}

impl Default for V4l2Options {
    fn default() -> Self {
        Self {
            buffers: 4,
            poll_slice: Duration::from_millis(100),
            first_frame_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens V4L2 devices at one path.
#[derive(Debug, Clone)]
pub struct V4l2Opener {
    /// The device node, e.g. `/dev/video0` (prefer a stable `/dev/v4l/by-id/…` link:
    /// USB re-enumeration after an unplug can renumber `videoN`).
    pub path: PathBuf,
    /// Device tuning.
    pub options: V4l2Options,
}

impl DeviceOpener for V4l2Opener {
    #[cfg(feature = "v4l2")]
    fn open(&mut self) -> Result<Box<dyn CaptureDevice>, DeviceError> {
        Ok(Box::new(super::kernel::V4l2Device::open(
            &self.path,
            self.options,
        )?))
    }

    #[cfg(not(feature = "v4l2"))]
    fn open(&mut self) -> Result<Box<dyn CaptureDevice>, DeviceError> {
        Err(DeviceError::unusable(
            &self.path,
            crate::features::V4L2_MISSING,
        ))
    }
}

/// Discrete intervals standing for a stepwise/continuous interval range (`min` is the
/// shortest interval, i.e. the highest rate): the ends and the usual rates between.
pub fn stepwise_intervals(min: FrameInterval, max: FrameInterval) -> Vec<FrameInterval> {
    let (hi, lo) = (min.fps(), max.fps());
    let mut out = vec![min, max];
    out.extend(
        USUAL_FPS
            .iter()
            .filter(|&&f| f64::from(f) >= lo && f64::from(f) <= hi)
            .map(|&f| FrameInterval::from_fps(f)),
    );
    out.retain(|i| i.numerator > 0 && i.denominator > 0);
    out.sort_by(|a, b| b.fps().total_cmp(&a.fps()));
    out.dedup_by(|a, b| (a.fps() - b.fps()).abs() < 1e-9);
    out
}

/// A scripted device for tests: a format list, frames, then an unplug or an idle
/// stream; opens that fail. Every call is logged with the camera state seen at that
/// moment, so tests check state transitions without timing.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use crate::health::{CameraHealth, CameraState};
    use std::collections::VecDeque;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};

    /// What happened, in order.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) enum Event {
        /// An open attempt; `ok` false for a scripted failure.
        Open { ok: bool, state: CameraState },
        /// A format was applied.
        Start(ChosenFormat),
        /// A frame was handed out.
        Frame { state: CameraState },
        /// The scripted unplug was reported.
        Unplug,
        /// The device was closed.
        Close,
    }

    /// How a session ends once its frames are out.
    pub(crate) enum End {
        /// `ENODEV` from the next call; with a gate, the device first tells the test it
        /// got there and waits for the test's go.
        Unplug(Option<Gate>),
        /// No more frames, but the stream stays up: `Ok(None)` after a 1 ms pause that
        /// stands for the driver's poll slice. The sender, when given, hears once that the
        /// device went idle (every frame before has been offered by then).
        Idle(Option<mpsc::Sender<()>>),
    }

    /// A rendezvous with the test.
    pub(crate) struct Gate {
        pub(crate) reached: mpsc::Sender<()>,
        pub(crate) proceed: mpsc::Receiver<()>,
    }

    /// One scripted session.
    pub(crate) struct Session {
        pub(crate) formats: Vec<AdvertisedFormat>,
        pub(crate) frames: Vec<(Vec<u8>, Option<Duration>)>,
        pub(crate) end: End,
    }

    type Plan = VecDeque<Result<Session, String>>;

    /// The script and the log, shared by the opener and the devices.
    #[derive(Clone)]
    pub(crate) struct FakeCamera {
        plan: Arc<Mutex<Plan>>,
        log: Arc<Mutex<Vec<Event>>>,
        health: Arc<CameraHealth>,
        /// Sent on every failed open, for tests that wait for one.
        failures: Arc<Mutex<Option<mpsc::Sender<()>>>>,
    }

    impl FakeCamera {
        pub(crate) fn new(health: Arc<CameraHealth>) -> Self {
            Self {
                plan: Arc::default(),
                log: Arc::default(),
                health,
                failures: Arc::default(),
            }
        }

        /// The next `n` opens fail.
        pub(crate) fn fail_opens(&self, n: usize) -> &Self {
            let mut plan = self.plan.lock().unwrap();
            for i in 0..n {
                plan.push_back(Err(format!("scripted open failure {}", i + 1)));
            }
            self
        }

        /// The next open succeeds with this session.
        pub(crate) fn session(&self, s: Session) -> &Self {
            self.plan.lock().unwrap().push_back(Ok(s));
            self
        }

        /// Reports every failed open on this channel.
        pub(crate) fn notify_failures(&self, tx: mpsc::Sender<()>) {
            *self.failures.lock().unwrap() = Some(tx);
        }

        pub(crate) fn log(&self) -> Vec<Event> {
            self.log.lock().unwrap().clone()
        }

        fn push(&self, e: Event) {
            self.log.lock().unwrap().push(e);
        }

        pub(crate) fn opener(&self) -> impl DeviceOpener {
            let cam = self.clone();
            move || -> Result<Box<dyn CaptureDevice>, DeviceError> {
                let state = cam.health.state();
                let next = cam.plan.lock().unwrap().pop_front();
                let path = Path::new("/dev/fake0");
                match next {
                    Some(Ok(session)) => {
                        cam.push(Event::Open { ok: true, state });
                        Ok(Box::new(FakeDevice {
                            cam: cam.clone(),
                            formats: session.formats,
                            frames: session.frames.into(),
                            end: Some(session.end),
                            current: Vec::new(),
                        }))
                    }
                    failure => {
                        cam.push(Event::Open { ok: false, state });
                        if let Some(tx) = cam.failures.lock().unwrap().as_ref() {
                            let _ = tx.send(());
                        }
                        let why = failure
                            .and_then(Result::err)
                            .unwrap_or_else(|| "script exhausted".into());
                        Err(DeviceError::unusable(path, why))
                    }
                }
            }
        }
    }

    /// A device of a [`FakeCamera`] session.
    pub(crate) struct FakeDevice {
        cam: FakeCamera,
        formats: Vec<AdvertisedFormat>,
        frames: VecDeque<(Vec<u8>, Option<Duration>)>,
        end: Option<End>,
        current: Vec<u8>,
    }

    impl CaptureDevice for FakeDevice {
        fn formats(&mut self) -> Result<Vec<AdvertisedFormat>, DeviceError> {
            Ok(self.formats.clone())
        }

        fn start(&mut self, format: &ChosenFormat) -> Result<ActiveFormat, DeviceError> {
            self.cam.push(Event::Start(*format));
            Ok(ActiveFormat {
                pixel: format.pixel,
                width: format.width,
                height: format.height,
                stride: 0,
                interval: format.interval,
            })
        }

        fn next_frame(&mut self) -> Result<Option<CapturedFrame<'_>>, DeviceError> {
            if let Some((bytes, timestamp)) = self.frames.pop_front() {
                self.cam.push(Event::Frame {
                    state: self.cam.health.state(),
                });
                self.current = bytes;
                return Ok(Some(CapturedFrame {
                    bytes: &self.current,
                    timestamp,
                }));
            }
            match self.end.take() {
                Some(End::Unplug(gate)) => {
                    if let Some(g) = gate {
                        let _ = g.reached.send(());
                        let _ = g.proceed.recv();
                    }
                    self.cam.push(Event::Unplug);
                    Err(DeviceError::io(
                        "dequeue buffer from",
                        Path::new("/dev/fake0"),
                        io::Error::from_raw_os_error(19),
                    ))
                }
                Some(End::Idle(notify)) => {
                    if let Some(tx) = notify {
                        let _ = tx.send(());
                    }
                    self.end = Some(End::Idle(None));
                    std::thread::sleep(Duration::from_millis(1));
                    Ok(None)
                }
                None => {
                    std::thread::sleep(Duration::from_millis(1));
                    Ok(None)
                }
            }
        }

        fn close(&mut self) {
            self.cam.push(Event::Close);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stepwise_interval_range() {
        let got = stepwise_intervals(FrameInterval::from_fps(30), FrameInterval::from_fps(1));
        let fps: Vec<f64> = got.iter().map(|i| i.fps()).collect();
        assert_eq!(fps, vec![30.0, 25.0, 20.0, 15.0, 10.0, 9.0, 5.0, 2.0, 1.0]);
    }

    #[test]
    fn unplug_errors() {
        let p = Path::new("/dev/video0");
        assert!(DeviceError::io("dequeue", p, io::Error::from_raw_os_error(19)).is_unplugged());
        assert!(DeviceError::io("open", p, io::Error::from_raw_os_error(2)).is_unplugged());
        assert!(!DeviceError::io("open", p, io::Error::from_raw_os_error(16)).is_unplugged());
        assert!(!DeviceError::unusable(p, "x").is_unplugged());
    }
}
