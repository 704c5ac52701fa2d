//! Decoders for the FFF records the thermal core uses: RawData (0x01), CameraInfo
//! (0x20), GPSInfo (0x2B) and EmbeddedImage (0x0E). Offsets and conventions follow
//! exiftool's FLIR.pm tables (see `shared/thermal/FLIR-FORMAT.md` §3–§5).
//!
//! - **RawData** by payload magic: a 16-bit PNG (samples read in the record's byte order),
//!   JPEG-LS, a lossy JPEG (refused: it holds no radiometric counts), else uncompressed
//!   words in the record's byte order with a length check.
//! - **JPEG-LS** (`.csq`) is decoded by `pure_jpegls` (pure Rust). It replaced CharLS
//!   (C++, CMake) on this evidence: bit-identical counts on all 8 frames of the T1030sc
//!   `.csq` (`common/tests/jpegls_reference.rs`), no panic, hang or heap overrun on cut,
//!   bit-flipped and random scans (`jpegls_robustness.rs`); the price is 2.3× CharLS's
//!   decode time (BENCHMARKS.md §8). `dicom-toolkit-codec` was not taken: it pulls a
//!   JPEG 2000 stack and many dependencies for one codec.
//! - **GPSInfo** applies the N/S/E/W refs to positive stored values, where exiftool's
//!   numeric output does not. The one fixture where that matters, the T1030sc `.csq`,
//!   stores +97.526° with `W`: exiftool prints "97° 31' E", we read −97.526°. We believe
//!   the reference is wrong there: the camera clock's offset in the same file is −07:00,
//!   which fits Manitoba (50.73° N, 97.53° W), not Tuva (97.5° E, UTC+7/+8); the DJI and
//!   Duo Pro R files store negative longitudes with `W`. Every other value of every
//!   fixture agrees with the reference (`common/tests/fixtures_reference.rs`).

use super::bytes::{ByteOrder, StructView};
use super::FlirError;
use crate::image::{checked_pixel_count, RawFrame};
use crate::radiometry::{RadiometricParams, KELVIN_OFFSET};
use chrono::{DateTime, FixedOffset, TimeZone};
use serde::{Deserialize, Serialize};

/// Offset of the image payload inside RawData and EmbeddedImage records.
pub(crate) const PAYLOAD_AT: usize = 0x20;

const PNG_MAGIC: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
const JPEG_LS_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF, 0xF7];
const JPEG_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF];

/// How the raw counts were stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawEncoding {
    /// Uncompressed 16-bit words, little-endian.
    RawLittleEndian,
    /// Uncompressed 16-bit words, big-endian.
    RawBigEndian,
    /// 16-bit greyscale PNG (byte-swapped by the camera when the record is little-endian).
    Png,
    /// JPEG-LS, lossless or near-lossless (FLIR `.csq` files; decoded with `pure_jpegls`).
    JpegLs,
}

impl std::fmt::Display for RawEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::RawLittleEndian => "uncompressed little-endian",
            Self::RawBigEndian => "uncompressed big-endian",
            Self::Png => "PNG",
            Self::JpegLs => "JPEG-LS",
        })
    }
}

impl std::fmt::Display for VisualImageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::Raw => "uncompressed",
        })
    }
}

/// Decides a record's byte order from its check word, as exiftool does: the word reads
/// a small number (2 for RawData/CameraInfo, 3 for EmbeddedImage) in the record's order.
fn record_order(bytes: &[u8], base: u64, what: &'static str) -> Result<ByteOrder, FlirError> {
    let le =
        StructView::new(bytes, ByteOrder::Little, base, what).u16(0, "byte-order check word")?;
    Ok(if le < 0x100 {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    })
}

/// Decodes a RawData record into counts.
/// `within_budget` is asked about the declared size before anything is decoded or
/// allocated.
pub(crate) fn decode_raw_data(
    record: &[u8],
    base: u64,
    within_budget: &dyn Fn(u32, u32) -> Result<(), FlirError>,
) -> Result<(RawFrame, RawEncoding, ByteOrder), FlirError> {
    const WHAT: &str = "raw data record";
    let order = record_order(record, base, WHAT)?;
    let view = StructView::new(record, order, base, WHAT);
    let width = u32::from(view.u16(0x02, "width")?);
    let height = u32::from(view.u16(0x04, "height")?);
    let pixels = checked_pixel_count(width, height).map_err(|e| FlirError::Record {
        record: WHAT,
        offset: base + 2,
        reason: e.to_string(),
    })?;
    within_budget(width, height)?;
    let payload = view.slice(
        PAYLOAD_AT,
        record.len().saturating_sub(PAYLOAD_AT),
        "payload",
    )?;
    let payload_base = base + PAYLOAD_AT as u64;
    let bad = |reason: String| FlirError::Record {
        record: WHAT,
        offset: payload_base,
        reason,
    };
    let (counts, encoding) = if payload.starts_with(PNG_MAGIC) {
        (
            decode_png(payload, width, height, order).map_err(bad)?,
            RawEncoding::Png,
        )
    } else if payload.starts_with(JPEG_LS_MAGIC) {
        (
            decode_jpeg_ls(payload, width, height).map_err(bad)?,
            RawEncoding::JpegLs,
        )
    } else if payload.starts_with(JPEG_MAGIC) {
        return Err(bad(
            "raw data is a lossy JPEG, which carries no radiometric counts".into(),
        ));
    } else {
        let needed = pixels * 2;
        if payload.len() < needed {
            return Err(FlirError::Truncated {
                what: WHAT,
                field: "uncompressed counts",
                offset: payload_base,
                needed: needed as u64,
                available: payload.len() as u64,
            });
        }
        let counts = words_to_u16(&payload[..needed], order);
        let encoding = match order {
            ByteOrder::Little => RawEncoding::RawLittleEndian,
            ByteOrder::Big => RawEncoding::RawBigEndian,
        };
        (counts, encoding)
    };
    let frame = RawFrame::new(width, height, counts).map_err(|e| bad(e.to_string()))?;
    Ok((frame, encoding, order))
}

/// Decodes a 16-bit greyscale PNG of exactly `width × height`.
///
/// PNG stores samples big-endian. FLIR cameras write the PNG from little-endian words
/// without converting, so when the RawData record is little-endian each sample must be
/// byte-swapped; a big-endian record (ThermaCAM EX320) stores them correctly. Reading
/// the PNG's sample bytes in the record's order does exactly that.
fn decode_png(
    payload: &[u8],
    width: u32,
    height: u32,
    order: ByteOrder,
) -> Result<Vec<u16>, String> {
    let pixels = width as usize * height as usize;
    // The decoder may not allocate more than the expected image plus slack, whatever
    // the PNG header claims.
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(payload),
        png::Limits {
            bytes: pixels * 2 + 1024,
        },
    );
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| format!("png: {e}"))?;
    let info = reader.info();
    if info.width != width || info.height != height {
        return Err(format!(
            "png is {}x{} but the record declares {width}x{height}",
            info.width, info.height
        ));
    }
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Sixteen {
        return Err(format!(
            "png is {:?} {:?}-bit, expected 16-bit greyscale",
            info.color_type, info.bit_depth as u8
        ));
    }
    let mut buf = vec![0u8; pixels * 2];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("png: {e}"))?;
    if frame.buffer_size() != buf.len() {
        return Err(format!(
            "png decoded {} bytes, expected {}",
            frame.buffer_size(),
            buf.len()
        ));
    }
    Ok(words_to_u16(&buf, order))
}

/// Decodes a single-component JPEG-LS stream of exactly `width × height` with
/// `pure_jpegls` (ITU-T T.87, pure Rust). On the T1030sc `.csq` it gives the same
/// counts as CharLS, bit for bit (`tests/jpegls_reference.rs`). FLIR writes those
/// frames near-lossless (NEAR = 5); any NEAR the standard allows is decoded.
///
/// The header is checked here first ([`read_jpeg_ls_header`]), so that only a stream
/// whose size, precision, component count and coding parameters are in bounds reaches
/// the decoder's sample arithmetic. A corrupt scan behind a valid header can still
/// overflow the decoder's 32-bit error sums: they wrap, in every profile (see
/// `[profile.dev.package.pure_jpegls]` in the workspace `Cargo.toml`) and the decode
/// ends in an error. (JPEG-LS has no checksum: a flipped bit may also decode, to other
/// counts.) Samples of up to 8 bits come back as `u16` like wider ones.
fn decode_jpeg_ls(payload: &[u8], width: u32, height: u32) -> Result<Vec<u16>, String> {
    // A stream cut short cannot decode, so require the end-of-image marker first (with
    // CharLS this also avoided seconds of work before it gave up). Writers pad after it
    // with zeros (the T1030sc .csq does).
    let end = payload.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if end < 2 || payload[end - 2..end] != [0xFF, 0xD9] {
        return Err("jpeg-ls stream has no end-of-image marker (truncated or corrupt)".to_string());
    }
    let stream = &payload[..end];
    let header = read_jpeg_ls_header(stream)?;
    if header.width != width || header.height != height {
        return Err(format!(
            "jpeg-ls stream is {}x{} but the record declares {width}x{height}",
            header.width, header.height
        ));
    }
    let (counts, _, _) =
        jpegls::decode(stream, width, height).map_err(|e| format!("jpeg-ls: {e}"))?;
    let pixels = width as usize * height as usize;
    if counts.len() != pixels {
        return Err(format!(
            "jpeg-ls decoded {} samples, expected {pixels}",
            counts.len()
        ));
    }
    Ok(counts)
}

/// What a JPEG-LS stream's marker segments declare before its scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JpegLsHeader {
    width: u32,
    height: u32,
    /// Bits per sample, 2..=16.
    precision: u8,
}

/// Largest LSE `RESET` accepted. The decoder keeps per-context sums of absolute errors
/// in 32 bits and halves them every `RESET` samples; errors reach 2^15 at 16 bits, so
/// 4096 keeps the sums under 2^28. Writers use the default, 64.
const JPEG_LS_MAX_RESET: u16 = 4096;

/// Reads and checks the marker segments of a JPEG-LS stream up to its start of scan.
///
/// Accepted, in any order before the scan: one SOF55 frame header (precision 2..=16,
/// one component, width and height non-zero), LSE preset coding parameters (ID 1; its
/// MAXVAL within the precision, RESET 3..=[`JPEG_LS_MAX_RESET`]), APPn and COM
/// segments (skipped). Then a SOS for that component: no mapping table, interleave
/// mode 0, no point transform, NEAR at most min(255, MAXVAL / 2). Anything else (a
/// second frame header, restart intervals, mapping tables, another marker, a segment
/// running past the end) is an error naming it.
fn read_jpeg_ls_header(stream: &[u8]) -> Result<JpegLsHeader, String> {
    const SOF55: u8 = 0xF7;
    const LSE: u8 = 0xF8;
    const SOS: u8 = 0xDA;
    const DRI: u8 = 0xDD;
    const COM: u8 = 0xFE;
    const EOI: u8 = 0xD9;
    if !stream.starts_with(&[0xFF, 0xD8]) {
        return Err("jpeg-ls stream does not start with a start-of-image marker".into());
    }
    // (header, component id) once the frame header is read.
    let mut frame: Option<(JpegLsHeader, u8)> = None;
    let mut preset_maxval: Option<u16> = None;
    let mut at = 2;
    loop {
        let ended = || "jpeg-ls header ends before the start of scan".to_string();
        let Some(&[mark, code]) = stream.get(at..at + 2) else {
            return Err(ended());
        };
        if mark != 0xFF {
            return Err(format!(
                "jpeg-ls header has byte 0x{mark:02x} at offset {at} where a marker belongs"
            ));
        }
        if code == EOI {
            return Err(ended());
        }
        let Some(&[len_hi, len_lo]) = stream.get(at + 2..at + 4) else {
            return Err(ended());
        };
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        let Some(body) = len
            .checked_sub(2)
            .and_then(|n| stream.get(at + 4..at + 4 + n))
        else {
            return Err(format!(
                "jpeg-ls marker 0xff{code:02x} at offset {at} has length {len}, below 2 or past the end of the stream"
            ));
        };
        match code {
            SOF55 => {
                if frame.is_some() {
                    return Err("jpeg-ls stream has a second frame header".into());
                }
                let [precision, h0, h1, w0, w1, components, ..] = *body else {
                    return Err(format!("jpeg-ls frame header is {len} bytes, too short"));
                };
                if components != 1 {
                    return Err(format!(
                        "jpeg-ls stream has {components} components, expected 1"
                    ));
                }
                if body.len() != 9 {
                    return Err(format!(
                        "jpeg-ls frame header is {len} bytes, expected 11 for one component"
                    ));
                }
                if !(2..=16).contains(&precision) {
                    return Err(format!(
                        "jpeg-ls precision is {precision} bits, expected 2 to 16"
                    ));
                }
                let (height, width) = (u16::from_be_bytes([h0, h1]), u16::from_be_bytes([w0, w1]));
                if width == 0 || height == 0 {
                    return Err(format!("jpeg-ls stream is {width}x{height}"));
                }
                let header = JpegLsHeader {
                    width: u32::from(width),
                    height: u32::from(height),
                    precision,
                };
                frame = Some((header, body[6]));
            }
            LSE => match *body {
                [1, m0, m1, _, _, _, _, _, _, r0, r1] => {
                    let reset = u16::from_be_bytes([r0, r1]);
                    if !(3..=JPEG_LS_MAX_RESET).contains(&reset) {
                        return Err(format!(
                            "jpeg-ls preset reset is {reset}, expected 3 to {JPEG_LS_MAX_RESET}"
                        ));
                    }
                    // 0 means the default, 2^precision - 1.
                    preset_maxval = Some(u16::from_be_bytes([m0, m1])).filter(|&m| m != 0);
                }
                [1, ..] => {
                    return Err(format!(
                        "jpeg-ls preset parameters segment is {len} bytes, expected 13"
                    ))
                }
                [id, ..] => {
                    return Err(format!(
                    "jpeg-ls preset segment id {id} (mapping table or extension) is not supported"
                ))
                }
                [] => return Err("jpeg-ls preset segment is empty".into()),
            },
            SOS => {
                let Some((header, component)) = frame else {
                    return Err("jpeg-ls start of scan comes before the frame header".into());
                };
                let [scan_components, selector, mapping, near, interleave, transform] = *body
                else {
                    return Err(format!(
                        "jpeg-ls scan header is {len} bytes, expected 8 for one component"
                    ));
                };
                if scan_components != 1 {
                    return Err(format!(
                        "jpeg-ls scan has {scan_components} components, expected 1"
                    ));
                }
                if selector != component {
                    return Err(format!(
                        "jpeg-ls scan is for component {selector}, the frame has component {component}"
                    ));
                }
                if mapping != 0 {
                    return Err(format!(
                        "jpeg-ls scan uses mapping table {mapping}, not supported"
                    ));
                }
                if interleave != 0 {
                    return Err(format!(
                        "jpeg-ls interleave mode is {interleave}, expected 0 for one component"
                    ));
                }
                if transform != 0 {
                    return Err(format!(
                        "jpeg-ls point transform is {transform}, not supported"
                    ));
                }
                let full_scale = u16::MAX >> (16 - header.precision);
                let maxval = preset_maxval.unwrap_or(full_scale);
                if maxval > full_scale {
                    return Err(format!(
                        "jpeg-ls preset maxval is {maxval}, above {full_scale} for {} bits",
                        header.precision
                    ));
                }
                if u16::from(near) > (maxval / 2).min(255) {
                    return Err(format!(
                        "jpeg-ls near is {near}, above min(255, maxval / 2) for maxval {maxval}"
                    ));
                }
                return Ok(header);
            }
            DRI => return Err("jpeg-ls restart intervals are not supported".into()),
            0xE0..=0xEF | COM => {}
            other => {
                return Err(format!(
                    "jpeg-ls header has an unexpected marker 0xff{other:02x} at offset {at}"
                ))
            }
        }
        at += 2 + len;
    }
}

/// Reads `bytes` as 16-bit words in `order` (a trailing odd byte is ignored).
///
/// Written as a loop over a zeroed output rather than `chunks_exact(2).map(..).collect()`:
/// that form compiled to a scalar loop with a run-time stride here (the `collect` was not
/// inlined, so the chunk size 2 was not a constant), 5–8× slower on a 640×480 frame
/// (≈ 0.15–0.25 ms per frame on the benchmark machine; see BENCHMARKS.md).
fn words_to_u16(bytes: &[u8], order: ByteOrder) -> Vec<u16> {
    let mut words = vec![0u16; bytes.len() / 2];
    let pairs = words.iter_mut().zip(bytes.chunks_exact(2));
    match order {
        ByteOrder::Little => pairs.for_each(|(w, b)| *w = u16::from_le_bytes([b[0], b[1]])),
        ByteOrder::Big => pairs.for_each(|(w, b)| *w = u16::from_be_bytes([b[0], b[1]])),
    }
    words
}

/// When the frame was captured, from the camera's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureTime(pub DateTime<FixedOffset>);

/// The camera's measurement range and clip/warning/saturation limits, °C.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CameraLimits {
    /// Lower end of the selected measurement range.
    pub range_min_c: Option<f64>,
    /// Upper end of the selected measurement range.
    pub range_max_c: Option<f64>,
    /// Lowest temperature before clipping.
    pub clip_min_c: Option<f64>,
    /// Highest temperature before clipping.
    pub clip_max_c: Option<f64>,
    /// Lower warning limit.
    pub warn_min_c: Option<f64>,
    /// Upper warning limit.
    pub warn_max_c: Option<f64>,
    /// Below this the detector is saturated.
    pub saturated_min_c: Option<f64>,
    /// Above this the detector is saturated: the true temperature may be higher.
    pub saturated_max_c: Option<f64>,
}

/// Everything read from the CameraInfo record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraInfo {
    /// The radiometric parameters as stored by the camera.
    pub params: RadiometricParams,
    /// Camera model (may be empty, or `*` on a FLIR ONE).
    pub model: String,
    /// Camera part number.
    pub part_number: String,
    /// Camera serial number.
    pub serial: String,
    /// Camera firmware version.
    pub software: String,
    /// Lens model.
    pub lens_model: Option<String>,
    /// Lens part number.
    pub lens_part_number: Option<String>,
    /// Lens serial number.
    pub lens_serial: Option<String>,
    /// Horizontal field of view, degrees.
    pub field_of_view_deg: Option<f64>,
    /// Filter model.
    pub filter_model: Option<String>,
    /// Capture time.
    pub captured_at: Option<CaptureTime>,
    /// Range, clip and saturation limits.
    pub limits: CameraLimits,
    /// `RawValueRangeMin`/`Max` the camera reports.
    pub raw_value_range: Option<(u16, u16)>,
    /// `RawValueMedian`.
    pub raw_value_median: Option<u16>,
    /// Focus distance, metres.
    pub focus_distance_m: Option<f64>,
    /// Frame rate, Hz.
    pub frame_rate_hz: Option<u16>,
    /// Byte order of the record.
    pub byte_order: ByteOrder,
}

/// Parses a CameraInfo record. Old cameras write short records (1148 bytes on a
/// ThermaCAM EX320); every field is bounds-checked and optional metadata beyond the
/// end is `None`, while the radiometric parameters are required.
pub(crate) fn parse_camera_info(record: &[u8], base: u64) -> Result<CameraInfo, FlirError> {
    const WHAT: &str = "camera info record";
    let order = record_order(record, base, WHAT)?;
    let v = StructView::new(record, order, base, WHAT);
    let f = |at, field| v.f32(at, field).map(f64::from);
    let kelvin = |at, field| f(at, field).map(|k| k - KELVIN_OFFSET);
    let opt_kelvin = |at, field| v.opt_f32(at, field).map(|k| f64::from(k) - KELVIN_OFFSET);
    let rh = f(0x3c, "RelativeHumidity")?;
    let params = RadiometricParams {
        emissivity: f(0x20, "Emissivity")?,
        object_distance_m: f(0x24, "ObjectDistance")?,
        reflected_c: kelvin(0x28, "ReflectedApparentTemperature")?,
        atmosphere_c: kelvin(0x2c, "AtmosphericTemperature")?,
        ir_window_c: kelvin(0x30, "IRWindowTemperature")?,
        ir_window_transmission: f(0x34, "IRWindowTransmission")?,
        // exiftool: "have seen value expressed as percent in FFF file".
        relative_humidity: if rh > 2.0 { rh / 100.0 } else { rh },
        planck_r1: f(0x58, "PlanckR1")?,
        planck_b: f(0x5c, "PlanckB")?,
        planck_f: f(0x60, "PlanckF")?,
        atm_alpha1: f(0x70, "AtmosphericTransAlpha1")?,
        atm_alpha2: f(0x74, "AtmosphericTransAlpha2")?,
        atm_beta1: f(0x78, "AtmosphericTransBeta1")?,
        atm_beta2: f(0x7c, "AtmosphericTransBeta2")?,
        atm_x: f(0x80, "AtmosphericTransX")?,
        planck_o: f64::from(v.i32(0x308, "PlanckO")?),
        planck_r2: f(0x30c, "PlanckR2")?,
    };
    let captured_at = capture_time(&v);
    let raw_value_range = match (
        v.opt_u16(0x310, "RawValueRangeMin"),
        v.opt_u16(0x312, "RawValueRangeMax"),
    ) {
        (Some(lo), Some(hi)) => Some((lo, hi)),
        _ => None,
    };
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(CameraInfo {
        params,
        model: v.opt_text(0xd4, 32, "CameraModel").unwrap_or_default(),
        part_number: v.opt_text(0xf4, 16, "CameraPartNumber").unwrap_or_default(),
        serial: v
            .opt_text(0x104, 16, "CameraSerialNumber")
            .unwrap_or_default(),
        software: v.opt_text(0x114, 16, "CameraSoftware").unwrap_or_default(),
        lens_model: non_empty(v.opt_text(0x170, 32, "LensModel")),
        lens_part_number: non_empty(v.opt_text(0x190, 16, "LensPartNumber")),
        lens_serial: non_empty(v.opt_text(0x1a0, 16, "LensSerialNumber")),
        field_of_view_deg: v.opt_f32(0x1b4, "FieldOfView").map(f64::from),
        filter_model: non_empty(v.opt_text(0x1ec, 16, "FilterModel")),
        captured_at,
        limits: CameraLimits {
            range_max_c: opt_kelvin(0x90, "CameraTemperatureRangeMax"),
            range_min_c: opt_kelvin(0x94, "CameraTemperatureRangeMin"),
            clip_max_c: opt_kelvin(0x98, "CameraTemperatureMaxClip"),
            clip_min_c: opt_kelvin(0x9c, "CameraTemperatureMinClip"),
            warn_max_c: opt_kelvin(0xa0, "CameraTemperatureMaxWarn"),
            warn_min_c: opt_kelvin(0xa4, "CameraTemperatureMinWarn"),
            saturated_max_c: opt_kelvin(0xa8, "CameraTemperatureMaxSaturated"),
            saturated_min_c: opt_kelvin(0xac, "CameraTemperatureMinSaturated"),
        },
        raw_value_range,
        raw_value_median: v.opt_u16(0x338, "RawValueMedian"),
        focus_distance_m: v.opt_f32(0x45c, "FocusDistance").map(f64::from),
        frame_rate_hz: v.opt_u16(0x464, "FrameRate"),
        byte_order: order,
    })
}

/// `DateTimeOriginal`: unix seconds (UTC) at 0x384, milliseconds in the low 16 bits of
/// 0x388, and the camera's time-zone as *minus* the UTC offset in minutes at 0x38c.
fn capture_time(v: &StructView<'_>) -> Option<CaptureTime> {
    let secs = v.u32(0x384, "DateTimeOriginal").ok()?;
    if secs == 0 {
        return None;
    }
    let millis = v.u32(0x388, "DateTimeOriginal ms").ok()? & 0xFFFF;
    let tz_minutes = i32::from(v.i16(0x38c, "DateTimeOriginal tz").ok()?);
    let offset = FixedOffset::east_opt(-tz_minutes * 60)?;
    let utc = DateTime::from_timestamp(i64::from(secs), (millis.min(999)) * 1_000_000)?;
    Some(CaptureTime(offset.from_utc_datetime(&utc.naive_utc())))
}

/// The GPSInfo record (always little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GpsInfo {
    /// Latitude in degrees, north positive.
    pub latitude_deg: f64,
    /// Longitude in degrees, east positive.
    pub longitude_deg: f64,
    /// Altitude in metres.
    pub altitude_m: Option<f64>,
}

/// Parses a GPSInfo record; `None` when the record says the fix is not valid.
pub(crate) fn parse_gps(record: &[u8], base: u64) -> Result<Option<GpsInfo>, FlirError> {
    let v = StructView::new(record, ByteOrder::Little, base, "gps record");
    if v.u32(0x00, "GPSValid")? == 0 {
        return Ok(None);
    }
    let lat_ref = v.slice(0x08, 1, "GPSLatitudeRef")?[0];
    let lon_ref = v.slice(0x0a, 1, "GPSLongitudeRef")?[0];
    let mut lat = v.f64(0x10, "GPSLatitude")?;
    let mut lon = v.f64(0x18, "GPSLongitude")?;
    // exiftool applies the refs only when the stored value is positive.
    if lat_ref == b'S' && lat > 0.0 {
        lat = -lat;
    }
    if lon_ref == b'W' && lon > 0.0 {
        lon = -lon;
    }
    if !(lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0) {
        return Ok(None);
    }
    Ok(Some(GpsInfo {
        latitude_deg: lat,
        longitude_deg: lon,
        altitude_m: v
            .opt_f32(0x20, "GPSAltitude")
            .map(f64::from)
            .filter(|a| a.is_finite()),
    }))
}

/// Kind of the embedded visual (daylight) image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VisualImageKind {
    /// JPEG.
    Jpeg,
    /// PNG (b60 cameras store it in YCbCr).
    Png,
    /// Uncompressed or unknown.
    Raw,
}

/// The camera's visual image embedded next to the thermal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedImage {
    /// Width the record declares.
    pub width: u32,
    /// Height the record declares.
    pub height: u32,
    /// Encoding of `bytes`.
    pub kind: VisualImageKind,
    /// The image file as stored.
    pub bytes: Vec<u8>,
}

/// Parses an EmbeddedImage record (check word 3).
pub(crate) fn parse_embedded_image(record: &[u8], base: u64) -> Result<EmbeddedImage, FlirError> {
    const WHAT: &str = "embedded image record";
    let order = record_order(record, base, WHAT)?;
    let v = StructView::new(record, order, base, WHAT);
    let width = u32::from(v.u16(0x02, "width")?);
    let height = u32::from(v.u16(0x04, "height")?);
    let bytes = v.slice(PAYLOAD_AT, record.len().saturating_sub(PAYLOAD_AT), "image")?;
    let kind = if bytes.starts_with(JPEG_MAGIC) {
        VisualImageKind::Jpeg
    } else if bytes.starts_with(PNG_MAGIC) {
        VisualImageKind::Png
    } else {
        VisualImageKind::Raw
    };
    Ok(EmbeddedImage {
        width,
        height,
        kind,
        bytes: bytes.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG-LS marker segment: marker, length, body.
    fn segment(code: u8, body: &[u8]) -> Vec<u8> {
        let len = u16::try_from(body.len() + 2).unwrap();
        [&[0xFF, code][..], &len.to_be_bytes(), body].concat()
    }

    /// SOF55 for a `width × height` frame with `components` components (ids 1, 2, …).
    fn sof(precision: u8, width: u16, height: u16, components: u8) -> Vec<u8> {
        let mut body = vec![precision];
        body.extend(height.to_be_bytes());
        body.extend(width.to_be_bytes());
        body.push(components);
        for id in 1..=components {
            body.extend([id, 0x11, 0]);
        }
        segment(0xF7, &body)
    }

    /// SOS for one component: selector, mapping table, NEAR, interleave, point transform.
    fn sos(selector: u8, mapping: u8, near: u8, interleave: u8, transform: u8) -> Vec<u8> {
        segment(0xDA, &[1, selector, mapping, near, interleave, transform])
    }

    /// LSE ID 1: MAXVAL, T1, T2, T3, RESET.
    fn lse(maxval: u16, reset: u16) -> Vec<u8> {
        let mut body = vec![1];
        for v in [maxval, 0, 0, 0, reset] {
            body.extend(v.to_be_bytes());
        }
        segment(0xF8, &body)
    }

    /// SOI, the segments, four scan bytes and EOI.
    fn jpeg_ls(segments: &[Vec<u8>]) -> Vec<u8> {
        let mut stream = vec![0xFF, 0xD8];
        for s in segments {
            stream.extend(s);
        }
        stream.extend([0, 0, 0, 0, 0xFF, 0xD9]);
        stream
    }

    fn rejected(segments: &[Vec<u8>]) -> String {
        decode_jpeg_ls(&jpeg_ls(segments), 4, 4).expect_err("rejected")
    }

    #[test]
    fn a_well_formed_jpeg_ls_header_is_read() {
        let header = read_jpeg_ls_header(&jpeg_ls(&[
            segment(0xE0, b"APP0"),
            sof(16, 4, 3, 1),
            segment(0xFE, b"comment"),
            lse(0xFFFF, 64),
            sos(1, 0, 5, 0, 0),
        ]));
        assert_eq!(
            header,
            Ok(JpegLsHeader {
                width: 4,
                height: 3,
                precision: 16
            })
        );
    }

    #[test]
    fn jpeg_ls_headers_out_of_bounds_are_rejected_before_decoding() {
        let sos0 = || sos(1, 0, 0, 0, 0);
        for (segments, want) in [
            (
                vec![sof(1, 4, 4, 1), sos0()],
                "precision is 1 bits, expected 2 to 16",
            ),
            (vec![sof(17, 4, 4, 1), sos0()], "precision is 17 bits"),
            (vec![sof(16, 4, 4, 3), sos0()], "3 components, expected 1"),
            (vec![sof(16, 4, 4, 0), sos0()], "0 components, expected 1"),
            (
                vec![sof(16, 5, 4, 1), sos0()],
                "stream is 5x4 but the record declares 4x4",
            ),
            (vec![sof(16, 0, 4, 1), sos0()], "stream is 0x4"),
            (
                vec![sof(16, 4, 4, 1), sof(16, 4, 4, 1), sos0()],
                "second frame header",
            ),
            (
                vec![sos0(), sof(16, 4, 4, 1)],
                "start of scan comes before the frame header",
            ),
            (
                vec![sof(16, 4, 4, 1), sos(2, 0, 0, 0, 0)],
                "scan is for component 2",
            ),
            (
                vec![sof(16, 4, 4, 1), sos(1, 1, 0, 0, 0)],
                "mapping table 1",
            ),
            (
                vec![sof(16, 4, 4, 1), sos(1, 0, 0, 1, 0)],
                "interleave mode is 1",
            ),
            (
                vec![sof(16, 4, 4, 1), sos(1, 0, 0, 0, 2)],
                "point transform is 2",
            ),
            (
                vec![sof(8, 4, 4, 1), sos(1, 0, 128, 0, 0)],
                "near is 128, above",
            ),
            (
                vec![sof(16, 4, 4, 1), lse(255, 64), sos(1, 0, 128, 0, 0)],
                "near is 128",
            ),
            (
                vec![sof(8, 4, 4, 1), lse(256, 64), sos0()],
                "maxval is 256, above 255",
            ),
            (
                vec![sof(16, 4, 4, 1), lse(0, 2), sos0()],
                "reset is 2, expected 3",
            ),
            (
                vec![sof(16, 4, 4, 1), lse(0, 4097), sos0()],
                "reset is 4097",
            ),
            (
                vec![sof(16, 4, 4, 1), segment(0xF8, &[2, 0, 0]), sos0()],
                "id 2",
            ),
            (
                vec![sof(16, 4, 4, 1), segment(0xF8, &[1, 0]), sos0()],
                "expected 13",
            ),
            (
                vec![sof(16, 4, 4, 1), segment(0xDD, &[0, 8]), sos0()],
                "restart intervals",
            ),
            (
                vec![segment(0xC0, &[8, 0, 4, 0, 4, 1, 1, 0x11, 0])],
                "unexpected marker 0xffc0",
            ),
            (
                vec![sof(16, 4, 4, 1), segment(0xDA, &[1, 1, 0, 0, 0])],
                "scan header is 7 bytes",
            ),
        ] {
            let err = rejected(&segments);
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
        let cut_in_frame_header =
            [&[0xFF, 0xD8][..], &sof(16, 4, 4, 1)[..8], &[0xFF, 0xD9]].concat();
        assert!(decode_jpeg_ls(&cut_in_frame_header, 4, 4)
            .unwrap_err()
            .contains("has length 11, below 2 or past the end"));
        let cut_before_scan = [&[0xFF, 0xD8][..], &sof(16, 4, 4, 1), &[0xFF, 0xD9]].concat();
        assert!(decode_jpeg_ls(&cut_before_scan, 4, 4)
            .unwrap_err()
            .contains("ends before the start of scan"));
        assert!(decode_jpeg_ls(&[0xFF, 0xD9], 4, 4)
            .unwrap_err()
            .contains("start-of-image"));
        let mut no_eoi = jpeg_ls(&[sof(16, 4, 4, 1), sos0()]);
        no_eoi.truncate(no_eoi.len() - 2);
        assert!(decode_jpeg_ls(&no_eoi, 4, 4)
            .unwrap_err()
            .contains("no end-of-image marker"));
    }

    /// A `width × height` ramp encoded by pure_jpegls at `precision` bits.
    fn encoded(precision: u8, near: u8, width: u32, height: u32) -> (Vec<u16>, Vec<u8>) {
        let top = (1u32 << precision) - 1;
        let counts: Vec<u16> = (0..width * height)
            .map(|i| ((i * 37 + i / width * 1013) % (top + 1)) as u16)
            .collect();
        let mut options = jpegls::EncodeOptions::default();
        options.precision = Some(precision);
        options.near = near;
        let mut stream = Vec::new();
        jpegls::encode_with_options(&counts, width, height, &options, &mut stream)
            .expect("encodes");
        (counts, stream)
    }

    #[test]
    fn jpeg_ls_decodes_every_precision() {
        for precision in [2, 8, 12, 16] {
            let (counts, mut stream) = encoded(precision, 0, 13, 7);
            // Writers pad after the end-of-image marker.
            stream.extend([0; 5]);
            assert_eq!(
                decode_jpeg_ls(&stream, 13, 7),
                Ok(counts),
                "{precision} bits"
            );
        }
    }

    #[test]
    fn near_lossless_jpeg_ls_stays_within_near() {
        let (counts, stream) = encoded(16, 5, 32, 8);
        let decoded = decode_jpeg_ls(&stream, 32, 8).expect("decodes");
        assert_eq!(decoded.len(), counts.len());
        for (got, want) in decoded.iter().zip(&counts) {
            assert!(got.abs_diff(*want) <= 5, "{got} vs {want}");
        }
    }

    #[test]
    fn words_follow_the_requested_byte_order() {
        let bytes = [0x01, 0x02, 0xFF, 0x00, 0x34, 0x12, 0x7F];
        assert_eq!(
            words_to_u16(&bytes, ByteOrder::Little),
            [0x0201, 0x00FF, 0x1234]
        );
        assert_eq!(
            words_to_u16(&bytes, ByteOrder::Big),
            [0x0102, 0xFF00, 0x3412]
        );
        assert!(words_to_u16(&[0xAB], ByteOrder::Little).is_empty());
    }

    #[test]
    fn words_match_the_straightforward_conversion_on_a_frame() {
        let bytes: Vec<u8> = (0..640 * 480 * 2).map(|i| (i * 7 % 251) as u8).collect();
        let le: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|w| u16::from_le_bytes([w[0], w[1]]))
            .collect();
        let be: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
            .collect();
        assert_eq!(words_to_u16(&bytes, ByteOrder::Little), le);
        assert_eq!(words_to_u16(&bytes, ByteOrder::Big), be);
    }
}
