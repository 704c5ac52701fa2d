//! Live V4L2 (USB video class) capture.
//!
//! One OS thread per camera ([`spawn`]): open the device, negotiate a format
//! ([`format::negotiate`]), stream frames into [`FrameSender::offer`] (live policy: a
//! full pipeline drops the frame and counts it), and when the device errors or is
//! unplugged close it and reopen with capped exponential backoff. The camera's
//! [`CameraHealth`](crate::health::CameraHealth) state says what is going on:
//! `Streaming`, `PreviewOnly` (a radiometric mode was configured but the device only
//! offers rendered video) or `Reconnecting(reason)`.
//!
//! `Y16` devices give radiometric frames; `YUYV`/`MJPG` give preview frames, whose
//! findings are qualitative (see [`format`](mod@format) for what that means per camera).
//! **A FLIR T560 streams only 8-bit rendered YUY2 640×480 (15/5/2 fps) over USB video:
//! for a T560 this source gives preview only; its radiometric data comes from saved
//! R-JPEG files (the folder source).**
//!
//! Frame times: drivers stamp buffers on the monotonic clock, which has no fixed
//! relation to the wall clock. The first stamped frame of a session is anchored to the
//! wall clock when it is received, later frames keep the driver's spacing from it
//! ([`ClockMap`]); frames without a driver stamp get the time they were received.

pub mod config;
pub use crate::backoff::Backoff;
pub use config::{PlanckConfig, V4l2Mode, V4l2SourceToml};

pub mod device;
pub mod format;
#[cfg(feature = "v4l2")]
pub mod kernel;

use self::device::{CaptureDevice, DeviceError, DeviceOpener};
use self::format::{CaptureMode, FormatRequest, Negotiated, PayloadKind};
use super::{FrameSender, Offer, SourceFrame};
use crate::health::CameraState;
use crate::shutdown::Shutdown;
use chitti_common::finding::FindingSource;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One V4L2 camera's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct V4l2SourceConfig {
    /// Camera id.
    pub camera: String,
    /// Device node (a `/dev/v4l/by-id/…` link survives USB renumbering; `/dev/videoN`
    /// may not).
    pub device: PathBuf,
    /// Preferred width, pixels (the closest offered size is used).
    pub width: u32,
    /// Preferred height, pixels.
    pub height: u32,
    /// Highest wanted rate, frames per second (the closest rate not above it is used).
    pub fps: f64,
    /// What the stream is for; `radiometric_counts` carries the radiometric parameters.
    pub mode: CaptureMode,
    /// The camera's upper saturation limit, °C, for radiometric frames.
    pub saturated_max_c: Option<f64>,
    /// Reopen backoff.
    pub backoff: Backoff,
    /// A stream that delivers nothing for this long is treated as lost and reopened.
    pub stall_timeout: Duration,
}

impl V4l2SourceConfig {
    /// A configuration with the default backoff and a 10 s stall timeout.
    pub fn new(
        camera: impl Into<String>,
        device: impl Into<PathBuf>,
        (width, height): (u32, u32),
        fps: f64,
        mode: CaptureMode,
    ) -> Self {
        Self {
            camera: camera.into(),
            device: device.into(),
            width,
            height,
            fps,
            mode,
            saturated_max_c: None,
            // 0.5 s doubling to 30 s.
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
            stall_timeout: Duration::from_secs(10),
        }
    }

    /// The format request this configuration makes.
    pub fn request(&self) -> FormatRequest {
        FormatRequest {
            width: self.width,
            height: self.height,
            fps: self.fps,
            mode: self.mode,
        }
    }
}

/// Maps driver timestamps (monotonic clock) to wall-clock times; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct ClockMap {
    anchor: Option<(Duration, DateTime<Utc>)>,
}

impl ClockMap {
    /// How far a mapped time may drift from the receive time before re-anchoring.
    pub const MAX_SKEW: Duration = Duration::from_secs(2);

    /// The wall-clock capture time of a frame stamped `driver` and received at `now`.
    pub fn map(&mut self, driver: Option<Duration>, now: DateTime<Utc>) -> DateTime<Utc> {
        let Some(ts) = driver else {
            return now;
        };
        if let Some((t0, w0)) = self.anchor {
            if let Some(mapped) = ts
                .checked_sub(t0)
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .and_then(|d| w0.checked_add_signed(d))
            {
                let skew = (mapped - now).abs().to_std().unwrap_or(Duration::MAX);
                if skew <= Self::MAX_SKEW {
                    return mapped;
                }
            }
        }
        self.anchor = Some((ts, now));
        now
    }
}

/// Consecutive undecodable frames after which the session is treated as lost.
const MAX_BAD_FRAMES: u32 = 30;

/// Starts the camera's source thread. It runs until `stop` is raised or the pipeline
/// closes its channel; an unusable configuration sets the camera `Failed` and ends it.
pub fn spawn(
    config: V4l2SourceConfig,
    opener: impl DeviceOpener,
    sender: FrameSender,
    stop: Shutdown,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("v4l2-{}", config.camera))
        .spawn(move || run(config, opener, sender, stop))
        .expect("the OS refused a source thread")
}

/// How a streaming session ended.
enum SessionEnd {
    /// Stop was raised.
    Stopped,
    /// The pipeline has shut down.
    Closed,
    /// The device was lost; reopen.
    Lost {
        reason: String,
        delivered_frames: bool,
    },
}

/// The source loop (what [`spawn`]'s thread runs).
pub fn run(
    config: V4l2SourceConfig,
    mut opener: impl DeviceOpener,
    sender: FrameSender,
    stop: Shutdown,
) {
    let health = sender.health().clone();
    let request = config.request();
    if let Err(e) = format::validate_request(&request) {
        tracing::error!(camera = %config.camera, error = %e, "v4l2 source not started");
        health.set_state(CameraState::Failed(e.to_string()));
        return;
    }
    let mut seq = 0u64;
    let mut retries = config.backoff.retries();
    while !stop.is_triggered() {
        let end = match opener.open() {
            Ok(mut device) => {
                let end = session(&config, device.as_mut(), &sender, &stop, &mut seq);
                device.close();
                end
            }
            Err(e) => SessionEnd::Lost {
                reason: lost_reason(&e),
                delivered_frames: false,
            },
        };
        match end {
            SessionEnd::Stopped => break,
            SessionEnd::Closed => {
                tracing::info!(camera = %config.camera, "pipeline closed; v4l2 source ends");
                break;
            }
            SessionEnd::Lost {
                reason,
                delivered_frames,
            } => {
                if delivered_frames {
                    retries.reset();
                }
                let wait = retries.next_delay();
                tracing::warn!(camera = %config.camera, device = %config.device.display(), %reason, retry_in = ?wait, "v4l2 camera lost");
                health.set_state(CameraState::Reconnecting(reason));
                if stop.sleep(wait) {
                    break;
                }
            }
        }
    }
}

fn lost_reason(e: &DeviceError) -> String {
    if e.is_unplugged() {
        format!("unplugged ({e})")
    } else {
        e.to_string()
    }
}

/// One open device: negotiate, start, stream until stop, pipeline shutdown or loss.
fn session(
    config: &V4l2SourceConfig,
    device: &mut dyn CaptureDevice,
    sender: &FrameSender,
    stop: &Shutdown,
    seq: &mut u64,
) -> SessionEnd {
    let lost = |reason: String, delivered_frames: bool| SessionEnd::Lost {
        reason,
        delivered_frames,
    };
    let health = sender.health();
    let offer = match device.formats() {
        Ok(o) => o,
        Err(e) => return lost(lost_reason(&e), false),
    };
    let negotiated = match format::negotiate(&offer, &config.request()) {
        Ok(n) => n,
        // The node may be a different device after re-enumeration: keep retrying,
        // with the reason (which names what is offered) in the camera's state.
        Err(e) => return lost(e.to_string(), false),
    };
    let active = match device.start(negotiated.format()) {
        Ok(a) => a,
        Err(e) => return lost(lost_reason(&e), false),
    };
    let kind = PayloadKind::for_negotiated(&negotiated, &config.mode, config.saturated_max_c);
    let streaming_state = match &negotiated {
        Negotiated::PreviewOnly { .. } => {
            tracing::warn!(camera = %config.camera, format = %active, "{negotiated}");
            CameraState::PreviewOnly(negotiated.to_string())
        }
        _ => {
            tracing::info!(camera = %config.camera, format = %active, "v4l2 streaming");
            CameraState::Streaming
        }
    };
    let mut clock = ClockMap::default();
    let mut delivered = false;
    let mut bad_frames = 0u32;
    let mut last_frame = Instant::now();
    loop {
        if stop.is_triggered() {
            return SessionEnd::Stopped;
        }
        let frame = match device.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => {
                if last_frame.elapsed() >= config.stall_timeout {
                    return lost(
                        format!("no frame for {:?}", config.stall_timeout),
                        delivered,
                    );
                }
                continue;
            }
            Err(e) => return lost(lost_reason(&e), delivered),
        };
        last_frame = Instant::now();
        let payload = match format::decode(frame.bytes, &active, &kind) {
            Ok(p) => p,
            Err(e) => {
                bad_frames += 1;
                tracing::debug!(camera = %config.camera, error = %e, "undecodable frame skipped");
                if bad_frames >= MAX_BAD_FRAMES {
                    return lost(
                        format!("{bad_frames} undecodable frames in a row: {e}"),
                        delivered,
                    );
                }
                continue;
            }
        };
        bad_frames = 0;
        let captured_at = clock.map(frame.timestamp, Utc::now()).fixed_offset();
        if !delivered {
            health.set_state(streaming_state.clone());
            delivered = true;
        }
        let out = SourceFrame {
            camera: config.camera.clone(),
            seq: *seq,
            captured_at,
            source: FindingSource::Stream,
            payload,
            file: None,
            position: None,
        };
        *seq += 1;
        if sender.offer(out) == Offer::Closed {
            return SessionEnd::Closed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::device::fake::{End, Event, FakeCamera, Gate, Session};
    use super::format::{AdvertisedFormat, ChosenFormat, FrameInterval, PixelFormat};
    use super::*;
    use crate::health::CameraHealth;
    use crate::sources::{FramePayload, PreviewPixels};
    use std::sync::{mpsc, Arc};

    const W: u32 = 4;
    const H: u32 = 2;

    fn advertised(code: &[u8; 4], fps: &[u32]) -> Vec<AdvertisedFormat> {
        vec![AdvertisedFormat {
            fourcc: *code,
            width: W,
            height: H,
            intervals: fps.iter().map(|&f| FrameInterval::from_fps(f)).collect(),
        }]
    }

    /// A Y16 frame whose every count is `value`.
    fn y16(value: u16) -> Vec<u8> {
        (0..W * H).flat_map(|_| value.to_le_bytes()).collect()
    }

    fn frames(values: std::ops::Range<u16>) -> Vec<(Vec<u8>, Option<Duration>)> {
        values
            .map(|v| (y16(v), Some(Duration::from_millis(u64::from(v) * 100))))
            .collect()
    }

    fn config(mode: CaptureMode) -> V4l2SourceConfig {
        V4l2SourceConfig {
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(4)),
            // Never reached in a test: stalls are not what these tests are about.
            stall_timeout: Duration::from_secs(3600),
            ..V4l2SourceConfig::new("cam1", "/dev/fake0", (W, H), 30.0, mode)
        }
    }

    fn linear() -> CaptureMode {
        CaptureMode::TemperatureLinear {
            kelvin_per_count: 0.01,
        }
    }

    struct Rig {
        health: Arc<CameraHealth>,
        cam: FakeCamera,
        sender: FrameSender,
        rx: tokio::sync::mpsc::Receiver<SourceFrame>,
        stop: Shutdown,
    }

    fn rig(capacity: usize) -> Rig {
        let health = Arc::new(CameraHealth::new("cam1"));
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        Rig {
            cam: FakeCamera::new(health.clone()),
            sender: FrameSender::new(tx, health.clone()),
            health,
            rx,
            stop: Shutdown::new(),
        }
    }

    fn counts_of(frame: &SourceFrame) -> u16 {
        match &frame.payload {
            FramePayload::TemperatureLinear(t) => {
                assert!((t.kelvin_per_count - 0.01).abs() < 1e-15);
                let c = t.counts.counts();
                assert!(c.iter().all(|&v| v == c[0]));
                c[0]
            }
            other => panic!("not temperature-linear: {other:?}"),
        }
    }

    #[test]
    fn streams_drops_reconnects_and_stops() {
        let mut r = rig(2);
        let (reached_tx, reached) = mpsc::channel();
        let (proceed, proceed_rx) = mpsc::channel();
        let (idle_tx, idle) = mpsc::channel();
        r.cam
            .session(Session {
                formats: advertised(b"Y16 ", &[30, 9]),
                frames: frames(1000..1005),
                end: End::Unplug(Some(Gate {
                    reached: reached_tx,
                    proceed: proceed_rx,
                })),
            })
            .fail_opens(2)
            .session(Session {
                formats: advertised(b"Y16 ", &[30, 9]),
                frames: frames(1005..1007),
                end: End::Idle(Some(idle_tx)),
            });
        let handle = spawn(config(linear()), r.cam.opener(), r.sender, r.stop.clone());

        // The device is about to report the unplug; nobody has read the channel yet:
        // 5 frames offered into room for 2.
        reached.recv().unwrap();
        assert_eq!((r.health.frames(), r.health.drops()), (2, 3));
        assert_eq!(r.health.state(), CameraState::Streaming);
        let first: Vec<SourceFrame> = (0..2).map(|_| r.rx.blocking_recv().unwrap()).collect();
        assert_eq!(first.iter().map(|f| f.seq).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(
            first.iter().map(counts_of).collect::<Vec<_>>(),
            [1000, 1001]
        );
        assert!(first
            .iter()
            .all(|f| f.source == FindingSource::Stream && f.camera == "cam1" && f.file.is_none()));
        proceed.send(()).unwrap();

        // After two failed reopens, the third open streams again; sequence numbers go on
        // (the gap 2..=4 is the dropped frames).
        let second: Vec<SourceFrame> = (0..2).map(|_| r.rx.blocking_recv().unwrap()).collect();
        assert_eq!(second.iter().map(|f| f.seq).collect::<Vec<_>>(), [5, 6]);
        assert_eq!(
            second.iter().map(counts_of).collect::<Vec<_>>(),
            [1005, 1006]
        );
        // Once the device is idle both offers are complete, and nothing changes the
        // state until stop.
        idle.recv().unwrap();
        assert_eq!(r.health.state(), CameraState::Streaming);
        assert_eq!((r.health.frames(), r.health.drops()), (4, 3));

        r.stop.trigger();
        handle.join().unwrap();

        let unplugged = CameraState::Reconnecting(
            "unplugged (dequeue buffer from /dev/fake0: No such device (os error 19))".into(),
        );
        let failed =
            |n: u32| CameraState::Reconnecting(format!("/dev/fake0: scripted open failure {n}"));
        let chosen = ChosenFormat {
            pixel: PixelFormat::Y16,
            width: W,
            height: H,
            interval: Some(FrameInterval::from_fps(30)),
        };
        let streaming = Event::Frame {
            state: CameraState::Streaming,
        };
        assert_eq!(
            r.cam.log(),
            vec![
                Event::Open {
                    ok: true,
                    state: CameraState::Starting
                },
                Event::Start(chosen),
                Event::Frame {
                    state: CameraState::Starting
                },
                streaming.clone(),
                streaming.clone(),
                streaming.clone(),
                streaming.clone(),
                Event::Unplug,
                Event::Close,
                Event::Open {
                    ok: false,
                    state: unplugged.clone()
                },
                Event::Open {
                    ok: false,
                    state: failed(1)
                },
                Event::Open {
                    ok: true,
                    state: failed(2)
                },
                Event::Start(chosen),
                Event::Frame { state: failed(2) },
                streaming,
                Event::Close,
            ]
        );
        assert_eq!(r.health.state(), CameraState::Streaming);
    }

    #[test]
    fn stop_wakes_the_backoff_wait() {
        let r = rig(2);
        let (failures_tx, failures) = mpsc::channel();
        r.cam.notify_failures(failures_tx);
        let mut cfg = config(linear());
        cfg.backoff = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        // Nothing scripted: every open fails.
        let handle = spawn(cfg, r.cam.opener(), r.sender, r.stop.clone());
        failures.recv().unwrap();
        r.stop.trigger();
        handle.join().unwrap();
        assert_eq!(
            r.health.state(),
            CameraState::Reconnecting("/dev/fake0: script exhausted".into())
        );
        assert_eq!(r.cam.log().len(), 1);
    }

    #[test]
    fn a_closed_pipeline_ends_the_thread() {
        let r = rig(2);
        drop(r.rx);
        r.cam.session(Session {
            formats: advertised(b"Y16 ", &[30]),
            frames: frames(7..8),
            end: End::Idle(None),
        });
        // No stop: the thread ends by itself.
        spawn(config(linear()), r.cam.opener(), r.sender, r.stop)
            .join()
            .unwrap();
        assert_eq!(r.cam.log().last(), Some(&Event::Close));
        assert_eq!(r.health.frames(), 0);
    }

    #[test]
    fn radiometric_asked_of_a_preview_device_streams_preview_and_says_so() {
        let mut r = rig(2);
        // T560-like: YUYV only.
        let yuyv: Vec<u8> = (0..W * H / 2)
            .flat_map(|i| [i as u8, 128, 100, 128])
            .collect();
        r.cam.session(Session {
            formats: advertised(b"YUYV", &[15, 5, 2]),
            frames: vec![(yuyv, None)],
            end: End::Idle(None),
        });
        let mode = CaptureMode::RadiometricCounts {
            params: format::tests::params(),
        };
        let handle = spawn(config(mode), r.cam.opener(), r.sender, r.stop.clone());
        let f = r.rx.blocking_recv().unwrap();
        assert!(!f.payload.is_quantitative());
        match f.payload {
            FramePayload::Preview(p) => {
                assert_eq!((p.width, p.height), (W, H));
                assert_eq!(
                    p.pixels,
                    PreviewPixels::Luma(vec![0, 100, 1, 100, 2, 100, 3, 100])
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.health.state().label(),
            "streaming preview: radiometric_counts asked but device offers only \
             YUYV 4x2 at 15/5/2 fps — preview only"
        );
        r.stop.trigger();
        handle.join().unwrap();
    }

    #[test]
    fn a_device_without_usable_formats_is_retried_with_the_reason() {
        let r = rig(2);
        let (failures_tx, failures) = mpsc::channel();
        r.cam.notify_failures(failures_tx);
        r.cam.session(Session {
            formats: advertised(b"GREY", &[30]),
            frames: vec![],
            end: End::Idle(None),
        });
        let handle = spawn(config(linear()), r.cam.opener(), r.sender, r.stop.clone());
        failures.recv().unwrap();
        r.stop.trigger();
        handle.join().unwrap();
        let log = r.cam.log();
        assert_eq!(log[1], Event::Close);
        assert_eq!(
            log[2],
            Event::Open {
                ok: false,
                state: CameraState::Reconnecting(
                    "device offers no usable format (Y16, YUYV or MJPG), only GREY 4x2 at 30 fps"
                        .into()
                )
            }
        );
    }

    #[test]
    fn undecodable_frames_are_skipped() {
        let mut r = rig(2);
        let mut script = vec![(vec![0u8; 3], None)];
        script.extend(frames(42..43));
        r.cam.session(Session {
            formats: advertised(b"Y16 ", &[30]),
            frames: script,
            end: End::Idle(None),
        });
        let handle = spawn(config(linear()), r.cam.opener(), r.sender, r.stop.clone());
        let f = r.rx.blocking_recv().unwrap();
        assert_eq!((f.seq, counts_of(&f)), (0, 42));
        r.stop.trigger();
        handle.join().unwrap();
        assert_eq!((r.health.frames(), r.health.drops()), (1, 0));
    }

    #[test]
    fn an_invalid_configuration_fails_without_opening() {
        let r = rig(2);
        let mode = CaptureMode::TemperatureLinear {
            kelvin_per_count: 0.0,
        };
        spawn(config(mode), r.cam.opener(), r.sender, r.stop)
            .join()
            .unwrap();
        assert!(
            matches!(r.health.state(), CameraState::Failed(why) if why.contains("kelvin_per_count"))
        );
        assert!(r.cam.log().is_empty());
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let config = V4l2SourceConfig::new("cam1", "/dev/fake0", (W, H), 30.0, linear());
        let mut retries = config.backoff.retries();
        let seen: Vec<Duration> = (0..9).map(|_| retries.next_delay()).collect();
        let secs: Vec<f64> = seen.iter().map(Duration::as_secs_f64).collect();
        assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
    }

    #[test]
    fn clock_map_keeps_driver_spacing() {
        let t = |ms: i64| DateTime::<Utc>::from_timestamp_millis(1_700_000_000_000 + ms).unwrap();
        let d = Duration::from_millis;
        let mut c = ClockMap::default();
        // No driver stamp: receive time.
        assert_eq!(c.map(None, t(5)), t(5));
        // First stamp anchors; later ones keep the driver's spacing, not the receive jitter.
        assert_eq!(c.map(Some(d(10_000)), t(0)), t(0));
        assert_eq!(c.map(Some(d(10_066)), t(90)), t(66));
        assert_eq!(c.map(Some(d(10_133)), t(140)), t(133));
        // A stamp going backwards, or too far from the receive time, re-anchors.
        assert_eq!(c.map(Some(d(9_000)), t(200)), t(200));
        assert_eq!(c.map(Some(d(19_000)), t(300)), t(300));
        assert_eq!(c.map(Some(d(19_050)), t(360)), t(350));
    }
}
