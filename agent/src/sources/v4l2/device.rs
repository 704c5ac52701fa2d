//! Capture devices: the [`CaptureDevice`] seam, and its implementation over the `v4l`
//! crate ([`V4l2Device`]: `VIDIOC_S_FMT`, `VIDIOC_S_PARM`, an MMAP buffer stream).
//!
//! The source loop only sees the trait, so its reconnect logic is tested with a scripted
//! fake; the `v4l` implementation needs a real `/dev/videoN` and is not exercised by the
//! unit tests.

use super::format::{
    fourcc_text, stepwise_candidates, ActiveFormat, AdvertisedFormat, ChosenFormat, FrameInterval,
    PixelFormat, USUAL_FPS, USUAL_HEIGHTS, USUAL_WIDTHS,
};
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

/// Tuning of a [`V4l2Device`].
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

/// Opens [`V4l2Device`]s at one path.
#[derive(Debug, Clone)]
pub struct V4l2Opener {
    /// The device node, e.g. `/dev/video0` (prefer a stable `/dev/v4l/by-id/…` link:
    /// USB re-enumeration after an unplug can renumber `videoN`).
    pub path: PathBuf,
    /// Device tuning.
    pub options: V4l2Options,
}

impl DeviceOpener for V4l2Opener {
    fn open(&mut self) -> Result<Box<dyn CaptureDevice>, DeviceError> {
        Ok(Box::new(V4l2Device::open(&self.path, self.options)?))
    }
}

/// `poll(2)` readiness for reading (`POLLIN`, the same value on every Linux target).
const POLLIN: i16 = 0x001;

/// A real V4L2 capture device, through the `v4l` crate.
///
/// Two `v4l` behaviours shape this type:
/// * its MMAP stream re-queues the previous buffer at the start of every `next()`; a
///   `next()` that timed out would re-queue a buffer that is already queued, so once
///   streaming this type polls the descriptor itself (in [`V4l2Options::poll_slice`]
///   slices) and only calls `next()` when a buffer is ready;
/// * its `Drop` impls panic when `VIDIOC_STREAMOFF`, `munmap` or `close` fail with
///   anything but `ENODEV`; [`CaptureDevice::close`] contains such a panic so that a
///   camera dying oddly costs a reconnect, not the source thread.
pub struct V4l2Device {
    path: PathBuf,
    options: V4l2Options,
    device: Option<v4l::Device>,
    stream: Option<v4l::io::mmap::Stream<'static>>,
    streaming: bool,
}

impl std::fmt::Debug for V4l2Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Device")
            .field("path", &self.path)
            .field("open", &self.device.is_some())
            .field("streaming", &self.streaming)
            .finish()
    }
}

impl V4l2Device {
    /// Opens the device node and checks that it can capture video by streaming.
    pub fn open(path: &Path, options: V4l2Options) -> Result<Self, DeviceError> {
        let device = v4l::Device::with_path(path).map_err(|e| DeviceError::io("open", path, e))?;
        let caps = device
            .query_caps()
            .map_err(|e| DeviceError::io("query capabilities of", path, e))?;
        use v4l::capability::Flags;
        if !caps.capabilities.contains(Flags::VIDEO_CAPTURE) {
            return Err(DeviceError::unusable(
                path,
                format!(
                    "{} ({}) is not a video capture node (a metadata node?)",
                    caps.card, caps.driver
                ),
            ));
        }
        if !caps.capabilities.contains(Flags::STREAMING) {
            return Err(DeviceError::unusable(
                path,
                format!("{} ({}) cannot stream", caps.card, caps.driver),
            ));
        }
        tracing::info!(path = %path.display(), card = %caps.card, driver = %caps.driver, bus = %caps.bus, "v4l2 device opened");
        Ok(Self {
            path: path.to_owned(),
            options,
            device: Some(device),
            stream: None,
            streaming: false,
        })
    }

    fn device(&self) -> Result<&v4l::Device, DeviceError> {
        self.device
            .as_ref()
            .ok_or_else(|| DeviceError::unusable(&self.path, "device is closed"))
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

fn interval_of(f: v4l::Fraction) -> FrameInterval {
    FrameInterval {
        numerator: f.numerator,
        denominator: f.denominator,
    }
}

impl CaptureDevice for V4l2Device {
    fn formats(&mut self) -> Result<Vec<AdvertisedFormat>, DeviceError> {
        use v4l::frameinterval::FrameIntervalEnum;
        use v4l::framesize::FrameSizeEnum;
        use v4l::video::Capture;
        let path = self.path.clone();
        let dev = self.device()?;
        let descriptions = dev
            .enum_formats()
            .map_err(|e| DeviceError::io("enumerate formats of", &path, e))?;
        let mut out = Vec::new();
        for d in descriptions {
            let sizes = match dev.enum_framesizes(d.fourcc) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(path = %path.display(), fourcc = %fourcc_text(d.fourcc.repr), error = %e, "no frame sizes");
                    continue;
                }
            };
            for size in sizes {
                let dims: Vec<(u32, u32)> = match size.size {
                    FrameSizeEnum::Discrete(s) => vec![(s.width, s.height)],
                    FrameSizeEnum::Stepwise(s) => {
                        let ws = stepwise_candidates(
                            s.min_width,
                            s.max_width,
                            s.step_width,
                            USUAL_WIDTHS,
                        );
                        let hs = stepwise_candidates(
                            s.min_height,
                            s.max_height,
                            s.step_height,
                            USUAL_HEIGHTS,
                        );
                        ws.iter()
                            .flat_map(|&w| hs.iter().map(move |&h| (w, h)))
                            .collect()
                    }
                };
                for (width, height) in dims {
                    let intervals = dev
                        .enum_frameintervals(d.fourcc, width, height)
                        .unwrap_or_default()
                        .into_iter()
                        .flat_map(|i| match i.interval {
                            FrameIntervalEnum::Discrete(f) => vec![interval_of(f)],
                            FrameIntervalEnum::Stepwise(s) => {
                                stepwise_intervals(interval_of(s.min), interval_of(s.max))
                            }
                        })
                        .collect();
                    out.push(AdvertisedFormat {
                        fourcc: d.fourcc.repr,
                        width,
                        height,
                        intervals,
                    });
                }
            }
        }
        Ok(out)
    }

    fn start(&mut self, format: &ChosenFormat) -> Result<ActiveFormat, DeviceError> {
        use v4l::video::Capture;
        let path = self.path.clone();
        let dev = self.device()?;
        let want = v4l::Format::new(
            format.width,
            format.height,
            v4l::FourCC::new(&format.pixel.fourcc()),
        );
        let got = dev
            .set_format(&want)
            .map_err(|e| DeviceError::io("set format on", &path, e))?;
        let pixel = PixelFormat::from_fourcc(got.fourcc.repr)
            .filter(|p| *p == format.pixel)
            .ok_or_else(|| {
                DeviceError::unusable(
                    &path,
                    format!(
                        "driver set {} when {} was asked",
                        fourcc_text(got.fourcc.repr),
                        format.pixel
                    ),
                )
            })?;
        let interval = match format.interval {
            Some(i) => {
                let wanted =
                    v4l::video::capture::Parameters::new(v4l::Fraction::new(i.numerator, i.denominator));
                match dev.set_params(&wanted) {
                    Ok(p) => Some(interval_of(p.interval)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "driver refused the frame rate; using its default");
                        dev.params().ok().map(|p| interval_of(p.interval))
                    }
                }
            }
            None => dev.params().ok().map(|p| interval_of(p.interval)),
        }
        .filter(|i| i.numerator > 0 && i.denominator > 0);
        let mut stream = v4l::io::mmap::Stream::with_buffers(
            dev,
            v4l::buffer::Type::VideoCapture,
            self.options.buffers.max(2),
        )
        .map_err(|e| DeviceError::io("allocate buffers on", &path, e))?;
        stream.set_timeout(self.options.first_frame_timeout);
        self.stream = Some(stream);
        self.streaming = false;
        Ok(ActiveFormat {
            pixel,
            width: got.width,
            height: got.height,
            stride: got.stride,
            interval,
        })
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame<'_>>, DeviceError> {
        use v4l::buffer::Flags;
        use v4l::io::traits::CaptureStream;
        let path = &self.path;
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| DeviceError::unusable(path, "not started"))?;
        if self.streaming {
            let slice = i32::try_from(self.options.poll_slice.as_millis()).unwrap_or(i32::MAX);
            let ready = stream
                .handle()
                .poll(POLLIN, slice)
                .map_err(|e| DeviceError::io("poll", path, e))?;
            if ready == 0 {
                return Ok(None);
            }
        }
        let first_frame_timeout = self.options.first_frame_timeout;
        let (buf, meta) = CaptureStream::next(stream).map_err(|e| {
            if e.kind() == io::ErrorKind::TimedOut {
                DeviceError::unusable(
                    path,
                    format!("no frame within {first_frame_timeout:?} of stream-on"),
                )
            } else {
                DeviceError::io("dequeue buffer from", path, e)
            }
        })?;
        self.streaming = true;
        if meta.flags.contains(Flags::ERROR) {
            tracing::debug!(path = %path.display(), sequence = meta.sequence, "driver flagged a corrupt buffer; skipped");
            return Ok(None);
        }
        let used = meta.bytesused as usize;
        let bytes = if used == 0 || used > buf.len() {
            buf
        } else {
            &buf[..used]
        };
        let monotonic = (meta.flags & Flags::TIMESTAMP_MASK) == Flags::TIMESTAMP_MONOTONIC;
        let stamped = meta.timestamp.sec > 0 || meta.timestamp.usec > 0;
        let timestamp = (monotonic && stamped && meta.timestamp.sec >= 0)
            .then(|| Duration::from(meta.timestamp));
        Ok(Some(CapturedFrame { bytes, timestamp }))
    }

    fn close(&mut self) {
        let stream = self.stream.take();
        let device = self.device.take();
        if stream.is_none() && device.is_none() {
            return;
        }
        self.streaming = false;
        // `v4l` panics in Drop on STREAMOFF/munmap/close errors other than ENODEV.
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            drop(stream);
            drop(device);
        }));
        if dropped.is_err() {
            tracing::warn!(path = %self.path.display(), "v4l2 device did not close cleanly");
        }
    }
}

impl Drop for V4l2Device {
    fn drop(&mut self) {
        self.close();
    }
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

    #[test]
    fn opening_a_missing_node_is_an_unplug() {
        let err = V4l2Device::open(
            Path::new("/nonexistent/chitti-video-test"),
            V4l2Options::default(),
        )
        .unwrap_err();
        assert!(err.is_unplugged(), "{err}");
        assert!(err
            .to_string()
            .starts_with("open /nonexistent/chitti-video-test: "));
    }
}
