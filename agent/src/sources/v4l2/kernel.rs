//! [`V4l2Device`]: the [`CaptureDevice`] over a real `/dev/videoN`, through the `v4l`
//! crate (`VIDIOC_S_FMT`, `VIDIOC_S_PARM`, an MMAP buffer stream).
//!
//! Built only with the `v4l2` cargo feature: `v4l` generates its kernel bindings with
//! bindgen at build time, which needs libclang, and default builds need no system
//! package (see ARCHITECTURE.md, "Builds without system packages"). Gateway images
//! enable the feature (`cross/`, the systemd install notes). It needs a real device and
//! is not exercised by the unit tests beyond opening a missing node.

use super::device::{stepwise_intervals, CaptureDevice, CapturedFrame, DeviceError, V4l2Options};
use super::format::{
    fourcc_text, stepwise_candidates, ActiveFormat, AdvertisedFormat, ChosenFormat, FrameInterval,
    PixelFormat, USUAL_HEIGHTS, USUAL_WIDTHS,
};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
