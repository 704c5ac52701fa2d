//! Format negotiation and frame decoding for V4L2 capture: pure functions, no device.
//!
//! What the pixel formats mean for Chitti:
//!
//! | fourcc | what | payload |
//! |---|---|---|
//! | `Y16 ` | 16-bit grey: raw detector counts, or temperature-linear counts | [`FramePayload::Radiometric`] / [`FramePayload::TemperatureLinear`] |
//! | `YUYV` | 8-bit rendered video (palette, AGC) | [`FramePayload::Preview`], luma only |
//! | `MJPG` | JPEG-compressed rendered video | [`FramePayload::Preview`], JPEG bytes kept as they are |
//!
//! Only `Y16` carries temperatures. `YUYV` and `MJPG` are what the camera *rendered*
//! (palette, automatic gain): findings from them are qualitative, detection only.
//!
//! **FLIR T560:** its USB video class (UVC) stream is 8-bit rendered colour, YUY2
//! (`YUYV`) 640×480 at 15, 5 or 2 fps: not radiometric counts. Radiometric data from a
//! T560 comes as saved R-JPEG files (the `rjpeg_dir` folder source), so for a T560 this
//! source gives preview only, and negotiation says so ([`Negotiated::PreviewOnly`]).
//! Cameras that stream `Y16` over UVC give counts that are either raw detector counts
//! (turned into °C with the configured [`RadiometricParams`]: the stream carries no
//! per-frame calibration) or temperature-linear (kelvin = count × resolution, e.g.
//! 0.01 K or 0.04 K per count; the value depends on the camera and its range setting,
//! so it is configured, never guessed).

use crate::sources::{
    FramePayload, PreviewFrame, PreviewPixels, RadiometricFrame, TemperatureLinearFrame,
};
use chitti_common::image::{ImageShapeError, RawFrame};
use chitti_common::radiometry::RadiometricParams;
use std::fmt;

/// A pixel format this source can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// `Y16 `: 16-bit little-endian grey (radiometric counts).
    Y16,
    /// `YUYV` (YUY2): packed 4:2:2, 8-bit rendered video.
    Yuyv,
    /// `MJPG`: motion JPEG, 8-bit rendered video.
    Mjpg,
}

impl PixelFormat {
    /// The V4L2 four-character code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            Self::Y16 => *b"Y16 ",
            Self::Yuyv => *b"YUYV",
            Self::Mjpg => *b"MJPG",
        }
    }

    /// The format for a four-character code, `None` for codes this source does not use.
    /// `YUY2` is accepted as another name of `YUYV`.
    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        match &code {
            b"Y16 " => Some(Self::Y16),
            b"YUYV" | b"YUY2" => Some(Self::Yuyv),
            b"MJPG" => Some(Self::Mjpg),
            _ => None,
        }
    }

    /// True for `Y16`, the only format that carries temperatures.
    pub fn is_radiometric(self) -> bool {
        matches!(self, Self::Y16)
    }

    /// The fourcc as text, trailing spaces trimmed (`Y16`, `YUYV`, `MJPG`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Y16 => "Y16",
            Self::Yuyv => "YUYV",
            Self::Mjpg => "MJPG",
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A four-character code as text, for messages (unprintable bytes as `?`).
pub fn fourcc_text(code: [u8; 4]) -> String {
    let text: String = code
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    text.trim_end().to_owned()
}

/// A frame interval: `numerator / denominator` seconds per frame (V4L2's convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInterval {
    /// Seconds, numerator.
    pub numerator: u32,
    /// Seconds, denominator.
    pub denominator: u32,
}

impl FrameInterval {
    /// `1 / fps` seconds.
    pub fn from_fps(fps: u32) -> Self {
        Self {
            numerator: 1,
            denominator: fps,
        }
    }

    /// Frames per second (0 for a degenerate interval).
    pub fn fps(self) -> f64 {
        if self.numerator == 0 {
            0.0
        } else {
            f64::from(self.denominator) / f64::from(self.numerator)
        }
    }
}

impl fmt::Display for FrameInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fps = self.fps();
        if (fps - fps.round()).abs() < 1e-9 {
            write!(f, "{}", fps.round())
        } else {
            write!(f, "{fps:.2}")
        }
    }
}

/// One size of one pixel format, as a device advertises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedFormat {
    /// The V4L2 four-character code, as the device gives it (unknown codes included).
    pub fourcc: [u8; 4],
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Frame intervals offered at this size; empty when the driver does not enumerate them.
    pub intervals: Vec<FrameInterval>,
}

/// What the camera's configuration asks the stream to be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CaptureMode {
    /// `radiometric_counts`: `Y16` raw detector counts, turned into °C with these
    /// parameters (from the configuration: a stream carries no per-frame metadata).
    RadiometricCounts {
        /// The camera's Planck constants and object parameters.
        params: RadiometricParams,
    },
    /// `temperature_linear`: `Y16` counts where kelvin = count × `kelvin_per_count`.
    TemperatureLinear {
        /// Kelvin per count (e.g. 0.01 or 0.04; per camera and range setting).
        kelvin_per_count: f64,
    },
    /// `preview`: rendered 8-bit video (`YUYV` or `MJPG`), detection only.
    Preview,
}

impl CaptureMode {
    /// The mode's configuration word.
    pub fn label(&self) -> &'static str {
        match self {
            Self::RadiometricCounts { .. } => "radiometric_counts",
            Self::TemperatureLinear { .. } => "temperature_linear",
            Self::Preview => "preview",
        }
    }

    /// True for the modes that want `Y16`.
    pub fn wants_radiometric(&self) -> bool {
        !matches!(self, Self::Preview)
    }
}

/// The configured wish: size, rate and mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FormatRequest {
    /// Preferred width, pixels.
    pub width: u32,
    /// Preferred height, pixels.
    pub height: u32,
    /// Highest wanted frame rate, frames per second.
    pub fps: f64,
    /// What the frames are for.
    pub mode: CaptureMode,
}

/// The format picked from what the device offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChosenFormat {
    /// Pixel format.
    pub pixel: PixelFormat,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Frame interval to ask for; `None` when the device enumerates none (driver default).
    pub interval: Option<FrameInterval>,
}

impl fmt::Display for ChosenFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}x{}", self.pixel, self.width, self.height)?;
        match self.interval {
            Some(i) => write!(f, " at {i} fps"),
            None => f.write_str(" at the driver's default rate"),
        }
    }
}

/// The outcome of negotiation. A radiometric wish that the device cannot meet is not an
/// error, but it is never silent either: it is [`Negotiated::PreviewOnly`].
#[derive(Debug, Clone, PartialEq)]
pub enum Negotiated {
    /// `Y16`, as a radiometric mode asked.
    Radiometric(ChosenFormat),
    /// Rendered video, as `preview` asked.
    Preview(ChosenFormat),
    /// A radiometric mode was asked but the device has no `Y16`: preview only, findings
    /// qualitative.
    PreviewOnly {
        /// The preview format picked instead.
        format: ChosenFormat,
        /// The mode that was asked (`radiometric_counts` or `temperature_linear`).
        asked: &'static str,
        /// What the device offers, as [`describe_offer`] writes it.
        offered: String,
    },
}

impl Negotiated {
    /// The chosen format.
    pub fn format(&self) -> &ChosenFormat {
        match self {
            Self::Radiometric(f) | Self::Preview(f) => f,
            Self::PreviewOnly { format, .. } => format,
        }
    }

    /// True when frames will carry temperatures.
    pub fn is_radiometric(&self) -> bool {
        matches!(self, Self::Radiometric(_))
    }
}

impl fmt::Display for Negotiated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Radiometric(c) => write!(f, "radiometric {c}"),
            Self::Preview(c) => write!(f, "preview {c}"),
            Self::PreviewOnly { asked, offered, .. } => write!(
                f,
                "{asked} asked but device offers only {offered} — preview only"
            ),
        }
    }
}

/// Why no format could be picked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NegotiationError {
    /// The device advertises no capture format at all (a metadata node, a busy device).
    #[error("device offers no capture formats")]
    NothingOffered,
    /// None of the advertised formats is `Y16`, `YUYV` or `MJPG`.
    #[error("device offers no usable format (Y16, YUYV or MJPG), only {offered}")]
    NoUsableFormat {
        /// What the device offers.
        offered: String,
    },
    /// `preview` was asked but the device only streams `Y16`.
    #[error(
        "preview asked but device offers only {offered}; configure mode radiometric_counts or temperature_linear"
    )]
    PreviewUnavailable {
        /// What the device offers.
        offered: String,
    },
    /// The request itself is unusable.
    #[error("invalid capture request: {0}")]
    InvalidRequest(String),
}

/// Checks a request before any device is involved.
pub fn validate_request(request: &FormatRequest) -> Result<(), NegotiationError> {
    let bad = |why: String| Err(NegotiationError::InvalidRequest(why));
    if request.width == 0 || request.height == 0 {
        return bad(format!("size {}x{}", request.width, request.height));
    }
    if !(request.fps.is_finite() && request.fps > 0.0) {
        return bad(format!("fps {} (must be above 0)", request.fps));
    }
    if let CaptureMode::TemperatureLinear { kelvin_per_count } = request.mode {
        if !(kelvin_per_count.is_finite() && kelvin_per_count > 0.0) {
            return bad(format!(
                "kelvin_per_count {kelvin_per_count} (must be above 0, e.g. 0.01 or 0.04)"
            ));
        }
    }
    Ok(())
}

/// What a device offers, grouped per format and size:
/// `YUYV 640x480 at 15/5/2 fps, MJPG 1280x720`.
pub fn describe_offer(offer: &[AdvertisedFormat]) -> String {
    if offer.is_empty() {
        return "nothing".into();
    }
    offer
        .iter()
        .map(|a| {
            let mut s = format!("{} {}x{}", fourcc_text(a.fourcc), a.width, a.height);
            if !a.intervals.is_empty() {
                let rates: Vec<String> = a.intervals.iter().map(|i| i.to_string()).collect();
                s.push_str(&format!(" at {} fps", rates.join("/")));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Picks the format for a request.
///
/// * A radiometric mode takes `Y16` when offered; otherwise it falls back to preview and
///   says so ([`Negotiated::PreviewOnly`]).
/// * Preview prefers `YUYV` over `MJPG` (its luma needs no JPEG decoder), whatever the
///   sizes; a device with only `Y16` is an error for preview (configure a radiometric
///   mode instead).
/// * Within the pixel format: the closest size (smallest |Δw| + |Δh|, ties to the larger
///   image), then the highest rate not above the requested fps; when every rate is above
///   it, the lowest rate offered.
pub fn negotiate(
    offer: &[AdvertisedFormat],
    request: &FormatRequest,
) -> Result<Negotiated, NegotiationError> {
    validate_request(request)?;
    if offer.is_empty() {
        return Err(NegotiationError::NothingOffered);
    }
    let offered = || describe_offer(offer);
    let has = |p: PixelFormat| {
        offer
            .iter()
            .any(|a| PixelFormat::from_fourcc(a.fourcc) == Some(p))
    };
    let preview_pixel = if has(PixelFormat::Yuyv) {
        Some(PixelFormat::Yuyv)
    } else if has(PixelFormat::Mjpg) {
        Some(PixelFormat::Mjpg)
    } else {
        None
    };
    if request.mode.wants_radiometric() {
        if has(PixelFormat::Y16) {
            return Ok(Negotiated::Radiometric(pick(
                offer,
                PixelFormat::Y16,
                request,
            )));
        }
        return match preview_pixel {
            Some(p) => Ok(Negotiated::PreviewOnly {
                format: pick(offer, p, request),
                asked: request.mode.label(),
                offered: offered(),
            }),
            None => Err(NegotiationError::NoUsableFormat { offered: offered() }),
        };
    }
    match preview_pixel {
        Some(p) => Ok(Negotiated::Preview(pick(offer, p, request))),
        None if has(PixelFormat::Y16) => {
            Err(NegotiationError::PreviewUnavailable { offered: offered() })
        }
        None => Err(NegotiationError::NoUsableFormat { offered: offered() }),
    }
}

/// Best size and rate for one pixel format, which `offer` is known to contain.
fn pick(offer: &[AdvertisedFormat], pixel: PixelFormat, request: &FormatRequest) -> ChosenFormat {
    let distance = |a: &AdvertisedFormat| {
        u64::from(a.width.abs_diff(request.width)) + u64::from(a.height.abs_diff(request.height))
    };
    let area = |a: &AdvertisedFormat| u64::from(a.width) * u64::from(a.height);
    let candidates: Vec<&AdvertisedFormat> = offer
        .iter()
        .filter(|a| PixelFormat::from_fourcc(a.fourcc) == Some(pixel))
        .collect();
    let best = candidates
        .iter()
        .copied()
        .min_by(|a, b| {
            distance(a)
                .cmp(&distance(b))
                .then_with(|| area(b).cmp(&area(a)))
        })
        .expect("pick is called for a pixel format the offer contains");
    // A device may list the same size more than once (one entry per interval): gather
    // every interval advertised for the chosen size.
    let intervals: Vec<FrameInterval> = candidates
        .iter()
        .filter(|a| a.width == best.width && a.height == best.height)
        .flat_map(|a| a.intervals.iter().copied())
        .filter(|i| i.numerator > 0 && i.denominator > 0)
        .collect();
    ChosenFormat {
        pixel,
        width: best.width,
        height: best.height,
        interval: pick_interval(&intervals, request.fps),
    }
}

/// The highest rate not above `fps` (0.01 % tolerance, so 29.97 takes 30000/1001 but not 30),
/// else the lowest rate offered; `None` when nothing is offered.
pub fn pick_interval(intervals: &[FrameInterval], fps: f64) -> Option<FrameInterval> {
    let tolerance = 1e-4 * fps;
    let by_fps = |a: &&FrameInterval, b: &&FrameInterval| a.fps().total_cmp(&b.fps());
    intervals
        .iter()
        .filter(|i| i.fps() <= fps + tolerance)
        .max_by(by_fps)
        .or_else(|| intervals.iter().min_by(by_fps))
        .copied()
}

/// Candidate values of one dimension of a stepwise/continuous range: the ends and the
/// usual sizes inside it, snapped to the step. Used to turn a driver's ranges into the
/// discrete list that [`negotiate`] reads.
pub fn stepwise_candidates(min: u32, max: u32, step: u32, usual: &[u32]) -> Vec<u32> {
    if max < min {
        return vec![min];
    }
    let step = step.max(1);
    let mut out = vec![min, min + (max - min) / step * step];
    for &u in usual {
        if (min..=max).contains(&u) {
            out.push(min + (u - min) / step * step);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Usual widths, for [`stepwise_candidates`].
pub const USUAL_WIDTHS: &[u32] = &[160, 320, 464, 640, 1024, 1280, 1920];
/// Usual heights, for [`stepwise_candidates`].
pub const USUAL_HEIGHTS: &[u32] = &[120, 240, 348, 480, 512, 720, 768, 1080];
/// Usual rates (fps), for turning a stepwise interval range into discrete intervals.
pub const USUAL_FPS: &[u32] = &[1, 2, 5, 9, 10, 15, 20, 25, 30, 50, 60];

/// What the driver actually set, which may differ from [`ChosenFormat`] (drivers adjust
/// sizes); frames are decoded with this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveFormat {
    /// Pixel format.
    pub pixel: PixelFormat,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Bytes per row as the driver reports it (`bytesperline`); 0 means tightly packed.
    pub stride: u32,
    /// The rate in effect, when the driver reports one.
    pub interval: Option<FrameInterval>,
}

impl ActiveFormat {
    /// Bytes per row: the driver's stride, or the packed row size when it gave 0.
    pub fn row_bytes(&self) -> usize {
        if self.stride == 0 {
            self.packed_row_bytes()
        } else {
            self.stride as usize
        }
    }

    /// Bytes of one row without padding (2 per pixel for `Y16` and `YUYV`; 0 for `MJPG`).
    pub fn packed_row_bytes(&self) -> usize {
        match self.pixel {
            PixelFormat::Y16 | PixelFormat::Yuyv => self.width as usize * 2,
            PixelFormat::Mjpg => 0,
        }
    }
}

impl fmt::Display for ActiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}x{}", self.pixel, self.width, self.height)?;
        if let Some(i) = self.interval {
            write!(f, " at {i} fps")?;
        }
        Ok(())
    }
}

/// Why a buffer could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer length fits neither `stride × height` nor an unpadded last row.
    #[error(
        "{pixel} {width}x{height} buffer is {actual} bytes, expected {expected} (stride {stride})"
    )]
    Length {
        /// Pixel format.
        pixel: PixelFormat,
        /// Width, pixels.
        width: u32,
        /// Height, pixels.
        height: u32,
        /// Bytes per row used.
        stride: usize,
        /// Bytes expected (`stride × height`).
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
    /// The driver's stride is shorter than one row of pixels.
    #[error("{pixel} stride {stride} is below the {needed} bytes of a {width}-pixel row")]
    Stride {
        /// Pixel format.
        pixel: PixelFormat,
        /// Width, pixels.
        width: u32,
        /// Stride the driver gave.
        stride: usize,
        /// Bytes one row needs.
        needed: usize,
    },
    /// `YUYV` needs an even width (two pixels share one U and one V).
    #[error("yuyv width {0} is odd")]
    OddWidth(u32),
    /// The frame size itself is unusable.
    #[error(transparent)]
    Shape(#[from] ImageShapeError),
    /// An `MJPG` buffer is not a JPEG with a frame header.
    #[error("mjpg frame is not a baseline/progressive jpeg: {0}")]
    Jpeg(&'static str),
    /// An `MJPG` frame's own size differs from the negotiated one.
    #[error("mjpg frame is {actual_width}x{actual_height}, negotiated {width}x{height}")]
    JpegSize {
        /// Negotiated width.
        width: u32,
        /// Negotiated height.
        height: u32,
        /// Width in the JPEG header.
        actual_width: u32,
        /// Height in the JPEG header.
        actual_height: u32,
    },
}

/// Checks the buffer length against the stride and returns the stride to use.
/// Accepted: exactly `stride × height`, or a last row without padding.
fn check_rows(bytes: &[u8], format: &ActiveFormat) -> Result<usize, DecodeError> {
    chitti_common::image::checked_pixel_count(format.width, format.height)?;
    let packed = format.packed_row_bytes();
    let stride = format.row_bytes();
    if stride < packed {
        return Err(DecodeError::Stride {
            pixel: format.pixel,
            width: format.width,
            stride,
            needed: packed,
        });
    }
    let h = format.height as usize;
    let full = stride * h;
    let unpadded_last = stride * (h - 1) + packed;
    if bytes.len() != full && bytes.len() != unpadded_last {
        return Err(DecodeError::Length {
            pixel: format.pixel,
            width: format.width,
            height: format.height,
            stride,
            expected: full,
            actual: bytes.len(),
        });
    }
    Ok(stride)
}

/// `Y16` buffer (little-endian u16 per pixel, rows `stride` bytes apart) → counts.
pub fn decode_y16(bytes: &[u8], format: &ActiveFormat) -> Result<RawFrame, DecodeError> {
    let stride = check_rows(bytes, format)?;
    let w = format.width as usize;
    let mut counts = Vec::with_capacity(w * format.height as usize);
    for row in bytes.chunks(stride).take(format.height as usize) {
        counts.extend(
            row[..w * 2]
                .chunks_exact(2)
                .map(|p| u16::from_le_bytes([p[0], p[1]])),
        );
    }
    Ok(RawFrame::new(format.width, format.height, counts)?)
}

/// `YUYV` buffer (`Y0 U Y1 V` per pixel pair) → the luma plane, one byte per pixel.
pub fn decode_yuyv_luma(bytes: &[u8], format: &ActiveFormat) -> Result<Vec<u8>, DecodeError> {
    if format.width % 2 == 1 {
        return Err(DecodeError::OddWidth(format.width));
    }
    let stride = check_rows(bytes, format)?;
    let w = format.width as usize;
    let mut luma = Vec::with_capacity(w * format.height as usize);
    for row in bytes.chunks(stride).take(format.height as usize) {
        luma.extend(row[..w * 2].iter().step_by(2));
    }
    Ok(luma)
}

/// Width and height from a JPEG's frame header (SOF0..SOF15 except DHT/JPG/DAC).
/// Only the markers are walked; nothing is decoded.
pub fn jpeg_dimensions(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != 0xD8 {
        return Err(DecodeError::Jpeg("no start-of-image marker"));
    }
    let mut i = 2;
    loop {
        // Skip fill bytes before a marker.
        while i < bytes.len() && bytes[i] == 0xFF && bytes.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if i + 4 > bytes.len() {
            return Err(DecodeError::Jpeg("no frame header before the end"));
        }
        if bytes[i] != 0xFF {
            return Err(DecodeError::Jpeg("marker expected"));
        }
        let marker = bytes[i + 1];
        match marker {
            0xD9 | 0xDA => return Err(DecodeError::Jpeg("no frame header before the scan")),
            // Standalone markers carry no length.
            0x01 | 0xD0..=0xD7 => {
                i += 2;
                continue;
            }
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if len < 2 {
            return Err(DecodeError::Jpeg("segment length below 2"));
        }
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            // Length(2) precision(1) height(2) width(2)
            let seg = bytes
                .get(i + 4..i + 2 + len)
                .filter(|s| s.len() >= 5)
                .ok_or(DecodeError::Jpeg("truncated frame header"))?;
            let height = u32::from(u16::from_be_bytes([seg[1], seg[2]]));
            let width = u32::from(u16::from_be_bytes([seg[3], seg[4]]));
            if width == 0 || height == 0 {
                return Err(DecodeError::Jpeg("zero size in frame header"));
            }
            return Ok((width, height));
        }
        i += 2 + len;
    }
}

/// `MJPG` buffer → preview, JPEG bytes kept (no JPEG decoder here). The frame header's
/// size must match the negotiated one.
pub fn decode_mjpg(bytes: &[u8], format: &ActiveFormat) -> Result<PreviewFrame, DecodeError> {
    let (w, h) = jpeg_dimensions(bytes)?;
    if (w, h) != (format.width, format.height) {
        return Err(DecodeError::JpegSize {
            width: format.width,
            height: format.height,
            actual_width: w,
            actual_height: h,
        });
    }
    Ok(PreviewFrame {
        width: w,
        height: h,
        pixels: PreviewPixels::Jpeg(bytes.to_vec()),
    })
}

/// How to turn a negotiated stream's buffers into payloads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PayloadKind {
    /// `Y16` raw counts with these parameters.
    Radiometric {
        /// Parameters from the configuration.
        params: RadiometricParams,
        /// Upper saturation limit, °C, when configured.
        saturated_max_c: Option<f64>,
    },
    /// `Y16` temperature-linear counts.
    TemperatureLinear {
        /// Kelvin per count.
        kelvin_per_count: f64,
    },
    /// Rendered video.
    Preview,
}

impl PayloadKind {
    /// The payload kind for a negotiation outcome under a mode.
    pub fn for_negotiated(
        negotiated: &Negotiated,
        mode: &CaptureMode,
        saturated_max_c: Option<f64>,
    ) -> Self {
        match (negotiated.is_radiometric(), mode) {
            (true, CaptureMode::RadiometricCounts { params }) => Self::Radiometric {
                params: *params,
                saturated_max_c,
            },
            (true, CaptureMode::TemperatureLinear { kelvin_per_count }) => {
                Self::TemperatureLinear {
                    kelvin_per_count: *kelvin_per_count,
                }
            }
            _ => Self::Preview,
        }
    }
}

/// One buffer → payload, by the active format and payload kind.
pub fn decode(
    bytes: &[u8],
    format: &ActiveFormat,
    kind: &PayloadKind,
) -> Result<FramePayload, DecodeError> {
    match format.pixel {
        PixelFormat::Y16 => {
            let raw = decode_y16(bytes, format)?;
            Ok(match *kind {
                PayloadKind::Radiometric {
                    params,
                    saturated_max_c,
                } => FramePayload::Radiometric(RadiometricFrame {
                    raw,
                    params,
                    saturated_max_c,
                }),
                PayloadKind::TemperatureLinear { kelvin_per_count } => {
                    FramePayload::TemperatureLinear(TemperatureLinearFrame {
                        counts: raw,
                        kelvin_per_count,
                    })
                }
                // Negotiation never gives Y16 for preview; keep the counts' high byte
                // rather than fail, should a driver switch formats under us.
                PayloadKind::Preview => FramePayload::Preview(PreviewFrame {
                    width: raw.width(),
                    height: raw.height(),
                    pixels: PreviewPixels::Luma(
                        raw.counts().iter().map(|c| (c >> 8) as u8).collect(),
                    ),
                }),
            })
        }
        PixelFormat::Yuyv => Ok(FramePayload::Preview(PreviewFrame {
            width: format.width,
            height: format.height,
            pixels: PreviewPixels::Luma(decode_yuyv_luma(bytes, format)?),
        })),
        PixelFormat::Mjpg => Ok(FramePayload::Preview(decode_mjpg(bytes, format)?)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn fi(fps: u32) -> FrameInterval {
        FrameInterval::from_fps(fps)
    }

    fn adv(code: &[u8; 4], w: u32, h: u32, fps: &[u32]) -> AdvertisedFormat {
        AdvertisedFormat {
            fourcc: *code,
            width: w,
            height: h,
            intervals: fps.iter().map(|&f| fi(f)).collect(),
        }
    }

    /// The FLIR T560's UVC stream.
    fn t560() -> Vec<AdvertisedFormat> {
        vec![adv(b"YUYV", 640, 480, &[15, 5, 2])]
    }

    /// A Boson-like core: Y16 and rendered video.
    fn boson() -> Vec<AdvertisedFormat> {
        vec![
            adv(b"YUYV", 640, 512, &[60, 30]),
            adv(b"Y16 ", 640, 512, &[60, 30, 9]),
            adv(b"Y16 ", 320, 256, &[60, 30, 9]),
            adv(b"MJPG", 1280, 720, &[30]),
        ]
    }

    pub(crate) fn params() -> RadiometricParams {
        RadiometricParams {
            emissivity: 0.95,
            object_distance_m: 5.0,
            reflected_c: 20.0,
            atmosphere_c: 20.0,
            ir_window_c: 20.0,
            ir_window_transmission: 1.0,
            relative_humidity: 0.5,
            planck_r1: 17096.453,
            planck_r2: 0.046_642_166,
            planck_b: 1428.0,
            planck_f: 1.0,
            planck_o: -7340.0,
            atm_alpha1: 0.006569,
            atm_alpha2: 0.012620,
            atm_beta1: -0.002276,
            atm_beta2: -0.006670,
            atm_x: 1.9,
        }
    }

    fn req(w: u32, h: u32, fps: f64, mode: CaptureMode) -> FormatRequest {
        FormatRequest {
            width: w,
            height: h,
            fps,
            mode,
        }
    }

    fn counts_mode() -> CaptureMode {
        CaptureMode::RadiometricCounts { params: params() }
    }

    fn linear(k: f64) -> CaptureMode {
        CaptureMode::TemperatureLinear {
            kelvin_per_count: k,
        }
    }

    fn chosen(pixel: PixelFormat, w: u32, h: u32, fps: Option<u32>) -> ChosenFormat {
        ChosenFormat {
            pixel,
            width: w,
            height: h,
            interval: fps.map(fi),
        }
    }

    #[test]
    fn negotiation_table() {
        use PixelFormat::*;
        let mut cases: Vec<(&str, Vec<AdvertisedFormat>, FormatRequest, Negotiated)> = vec![
            (
                "y16 exact",
                boson(),
                req(640, 512, 30.0, counts_mode()),
                Negotiated::Radiometric(chosen(Y16, 640, 512, Some(30))),
            ),
            (
                "y16 preferred over closer-sized yuyv; temperature linear",
                vec![adv(b"YUYV", 320, 256, &[30]), adv(b"Y16 ", 640, 512, &[30])],
                req(320, 256, 30.0, linear(0.01)),
                Negotiated::Radiometric(chosen(Y16, 640, 512, Some(30))),
            ),
            (
                "closest size",
                boson(),
                req(300, 240, 30.0, linear(0.04)),
                Negotiated::Radiometric(chosen(Y16, 320, 256, Some(30))),
            ),
            (
                "closest fps not above the request",
                boson(),
                req(640, 512, 20.0, counts_mode()),
                Negotiated::Radiometric(chosen(Y16, 640, 512, Some(9))),
            ),
            (
                "every rate above the request: the lowest",
                vec![adv(b"Y16 ", 160, 120, &[30, 60])],
                req(160, 120, 9.0, counts_mode()),
                Negotiated::Radiometric(chosen(Y16, 160, 120, Some(30))),
            ),
            (
                "no intervals enumerated: driver default",
                vec![adv(b"Y16 ", 160, 120, &[])],
                req(160, 120, 9.0, counts_mode()),
                Negotiated::Radiometric(chosen(Y16, 160, 120, None)),
            ),
            (
                "t560 preview, 15 fps asked",
                t560(),
                req(640, 480, 15.0, CaptureMode::Preview),
                Negotiated::Preview(chosen(Yuyv, 640, 480, Some(15))),
            ),
            (
                "t560 preview, 10 fps asked gives 5",
                t560(),
                req(640, 480, 10.0, CaptureMode::Preview),
                Negotiated::Preview(chosen(Yuyv, 640, 480, Some(5))),
            ),
            (
                "t560 radiometric asked: preview only, said so",
                t560(),
                req(640, 480, 15.0, counts_mode()),
                Negotiated::PreviewOnly {
                    format: chosen(Yuyv, 640, 480, Some(15)),
                    asked: "radiometric_counts",
                    offered: "YUYV 640x480 at 15/5/2 fps".into(),
                },
            ),
            (
                "preview prefers yuyv over mjpg whatever the size",
                vec![adv(b"MJPG", 640, 480, &[30]), adv(b"YUYV", 320, 240, &[30])],
                req(640, 480, 30.0, CaptureMode::Preview),
                Negotiated::Preview(chosen(Yuyv, 320, 240, Some(30))),
            ),
            (
                "mjpg only",
                vec![adv(b"MJPG", 1280, 720, &[30, 15])],
                req(640, 480, 25.0, CaptureMode::Preview),
                Negotiated::Preview(chosen(Mjpg, 1280, 720, Some(15))),
            ),
            (
                "size tie goes to the larger image",
                vec![adv(b"YUYV", 600, 480, &[30]), adv(b"YUYV", 680, 480, &[30])],
                req(640, 480, 30.0, CaptureMode::Preview),
                Negotiated::Preview(chosen(Yuyv, 680, 480, Some(30))),
            ),
            (
                "same size listed twice: intervals gathered; 1001 fractions tolerated",
                vec![
                    adv(b"YUYV", 640, 480, &[15]),
                    AdvertisedFormat {
                        intervals: vec![FrameInterval {
                            numerator: 1001,
                            denominator: 30000,
                        }],
                        ..adv(b"YUYV", 640, 480, &[])
                    },
                ],
                req(640, 480, 29.97, CaptureMode::Preview),
                Negotiated::Preview(ChosenFormat {
                    interval: Some(FrameInterval {
                        numerator: 1001,
                        denominator: 30000,
                    }),
                    ..chosen(Yuyv, 640, 480, None)
                }),
            ),
        ];
        cases.push((
            "29.97 asked does not take 30",
            vec![adv(b"YUYV", 640, 480, &[30, 15])],
            req(640, 480, 29.97, CaptureMode::Preview),
            Negotiated::Preview(chosen(Yuyv, 640, 480, Some(15))),
        ));
        for (name, offer, request, want) in cases {
            assert_eq!(negotiate(&offer, &request), Ok(want), "{name}");
        }
    }

    #[test]
    fn negotiation_errors_name_the_offer() {
        let grey = vec![adv(b"GREY", 640, 480, &[30])];
        let err = negotiate(&grey, &req(640, 480, 30.0, counts_mode())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "device offers no usable format (Y16, YUYV or MJPG), only GREY 640x480 at 30 fps"
        );
        let y16 = vec![adv(b"Y16 ", 640, 512, &[30])];
        let err = negotiate(&y16, &req(640, 512, 30.0, CaptureMode::Preview)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "preview asked but device offers only Y16 640x512 at 30 fps; \
             configure mode radiometric_counts or temperature_linear"
        );
        assert_eq!(
            negotiate(&[], &req(640, 480, 30.0, CaptureMode::Preview)),
            Err(NegotiationError::NothingOffered)
        );
        for bad in [
            req(0, 480, 30.0, CaptureMode::Preview),
            req(640, 480, 0.0, CaptureMode::Preview),
            req(640, 480, f64::NAN, CaptureMode::Preview),
            req(640, 480, 30.0, linear(0.0)),
            req(640, 480, 30.0, linear(-0.01)),
        ] {
            assert!(
                matches!(
                    negotiate(&t560(), &bad),
                    Err(NegotiationError::InvalidRequest(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn preview_only_message() {
        let n = negotiate(&t560(), &req(640, 480, 15.0, linear(0.01))).unwrap();
        assert!(!n.is_radiometric());
        assert_eq!(
            n.to_string(),
            "temperature_linear asked but device offers only YUYV 640x480 at 15/5/2 fps — preview only"
        );
    }

    #[test]
    fn fourcc_names() {
        assert_eq!(PixelFormat::from_fourcc(*b"YUY2"), Some(PixelFormat::Yuyv));
        assert_eq!(PixelFormat::from_fourcc(*b"Y16 "), Some(PixelFormat::Y16));
        assert_eq!(PixelFormat::from_fourcc(*b"GREY"), None);
        for p in [PixelFormat::Y16, PixelFormat::Yuyv, PixelFormat::Mjpg] {
            assert_eq!(PixelFormat::from_fourcc(p.fourcc()), Some(p));
        }
        assert_eq!(fourcc_text(*b"Y16 "), "Y16");
        assert_eq!(fourcc_text([b'A', 0, b'B', b' ']), "A?B");
    }

    #[test]
    fn stepwise_ranges_become_candidates() {
        assert_eq!(
            stepwise_candidates(160, 640, 16, USUAL_WIDTHS),
            vec![160, 320, 464, 640]
        );
        assert_eq!(
            stepwise_candidates(100, 110, 3, &[105]),
            vec![100, 103, 109]
        );
        assert_eq!(stepwise_candidates(5, 1, 1, &[]), vec![5]);
    }

    fn active(pixel: PixelFormat, w: u32, h: u32, stride: u32) -> ActiveFormat {
        ActiveFormat {
            pixel,
            width: w,
            height: h,
            stride,
            interval: None,
        }
    }

    #[test]
    fn y16_packed_decodes_little_endian() {
        let counts: Vec<u16> = vec![0x0102, 0xABCD, 7, 65535, 0, 30000];
        let bytes: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
        let f = active(PixelFormat::Y16, 3, 2, 0);
        let raw = decode_y16(&bytes, &f).unwrap();
        assert_eq!((raw.width(), raw.height()), (3, 2));
        assert_eq!(raw.counts(), &counts[..]);
        // Stride given equal to the packed row is the same thing.
        assert_eq!(
            decode_y16(&bytes, &active(PixelFormat::Y16, 3, 2, 6)),
            Ok(raw)
        );
    }

    #[test]
    fn y16_stride_padding_is_skipped() {
        // 2x2 pixels, stride 6 bytes (2 bytes of padding per row).
        let padded = [1, 0, 2, 0, 0xEE, 0xEE, 3, 0, 4, 0, 0xEE, 0xEE];
        let f = active(PixelFormat::Y16, 2, 2, 6);
        assert_eq!(decode_y16(&padded, &f).unwrap().counts(), &[1, 2, 3, 4]);
        // Last row without its padding is accepted too.
        assert_eq!(
            decode_y16(&padded[..10], &f).unwrap().counts(),
            &[1, 2, 3, 4]
        );
    }

    #[test]
    fn y16_wrong_lengths_are_errors() {
        let f = active(PixelFormat::Y16, 4, 3, 0);
        for len in [0, 23, 25, 12, 48] {
            let err = decode_y16(&vec![0; len], &f).unwrap_err();
            assert_eq!(
                err,
                DecodeError::Length {
                    pixel: PixelFormat::Y16,
                    width: 4,
                    height: 3,
                    stride: 8,
                    expected: 24,
                    actual: len
                }
            );
        }
        assert!(decode_y16(&[0; 24], &f).is_ok());
    }

    #[test]
    fn y16_bad_stride_and_size() {
        let err = decode_y16(&[0; 12], &active(PixelFormat::Y16, 4, 3, 4)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Y16 stride 4 is below the 8 bytes of a 4-pixel row"
        );
        assert!(matches!(
            decode_y16(&[], &active(PixelFormat::Y16, 0, 3, 0)),
            Err(DecodeError::Shape(_))
        ));
    }

    #[test]
    fn yuyv_keeps_luma() {
        // Two rows of two pixels: Y0 U Y1 V.
        let bytes = [10, 128, 20, 128, 30, 100, 40, 200];
        let f = active(PixelFormat::Yuyv, 2, 2, 0);
        assert_eq!(decode_yuyv_luma(&bytes, &f).unwrap(), vec![10, 20, 30, 40]);
        // With stride padding.
        let padded = [10, 128, 20, 128, 0, 0, 30, 100, 40, 200, 0, 0];
        let f = active(PixelFormat::Yuyv, 2, 2, 6);
        assert_eq!(decode_yuyv_luma(&padded, &f).unwrap(), vec![10, 20, 30, 40]);
    }

    #[test]
    fn yuyv_wrong_length_and_odd_width() {
        let f = active(PixelFormat::Yuyv, 640, 480, 0);
        let err = decode_yuyv_luma(&vec![0; 640 * 480], &f).unwrap_err();
        assert_eq!(
            err.to_string(),
            "YUYV 640x480 buffer is 307200 bytes, expected 614400 (stride 1280)"
        );
        assert_eq!(
            decode_yuyv_luma(&[0; 12], &active(PixelFormat::Yuyv, 3, 2, 0)),
            Err(DecodeError::OddWidth(3))
        );
    }

    /// A minimal JPEG header: SOI, APP0 (JFIF), SOF0 with the given size, then EOI.
    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8];
        b.extend([0xFF, 0xE0, 0x00, 0x10]);
        b.extend(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        b.extend([0xFF, 0xC0, 0x00, 0x0B, 0x08]);
        b.extend(h.to_be_bytes());
        b.extend(w.to_be_bytes());
        b.extend([0x01, 0x01, 0x11, 0x00]);
        b.extend([0xFF, 0xD9]);
        b
    }

    #[test]
    fn mjpg_reads_size_only() {
        assert_eq!(jpeg_dimensions(&jpeg(640, 480)), Ok((640, 480)));
        let f = active(PixelFormat::Mjpg, 640, 480, 0);
        let p = decode_mjpg(&jpeg(640, 480), &f).unwrap();
        assert!(matches!(p.pixels, PreviewPixels::Jpeg(ref b) if *b == jpeg(640, 480)));
        assert_eq!(
            decode_mjpg(&jpeg(320, 240), &f).unwrap_err().to_string(),
            "mjpg frame is 320x240, negotiated 640x480"
        );
        assert!(decode_mjpg(&[0xFF, 0xD8, 0xFF, 0xD9], &f).is_err());
        assert!(decode_mjpg(b"not a jpeg", &f).is_err());
        let truncated = &jpeg(640, 480)[..24];
        assert!(decode_mjpg(truncated, &f).is_err());
    }

    #[test]
    fn payload_kinds() {
        let bytes: Vec<u8> = [100u16, 200].iter().flat_map(|c| c.to_le_bytes()).collect();
        let f = active(PixelFormat::Y16, 2, 1, 0);
        let n = Negotiated::Radiometric(chosen(PixelFormat::Y16, 2, 1, None));
        let kind = PayloadKind::for_negotiated(&n, &linear(0.04), None);
        match decode(&bytes, &f, &kind).unwrap() {
            FramePayload::TemperatureLinear(t) => {
                assert_eq!(t.counts.counts(), &[100, 200]);
                assert!((t.kelvin(200) - 8.0).abs() < 1e-12);
            }
            other => panic!("{other:?}"),
        }
        let kind = PayloadKind::for_negotiated(&n, &counts_mode(), Some(650.0));
        match decode(&bytes, &f, &kind).unwrap() {
            FramePayload::Radiometric(r) => {
                assert_eq!(r.params, params());
                assert_eq!(r.saturated_max_c, Some(650.0));
            }
            other => panic!("{other:?}"),
        }
        let n = negotiate(&t560(), &req(640, 480, 15.0, counts_mode())).unwrap();
        assert_eq!(
            PayloadKind::for_negotiated(&n, &counts_mode(), None),
            PayloadKind::Preview
        );
    }
}
