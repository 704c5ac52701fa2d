//! Decoders for the FFF records the thermal core uses: RawData (0x01), CameraInfo
//! (0x20), GPSInfo (0x2B) and EmbeddedImage (0x0E). Offsets and conventions follow
//! exiftool's FLIR.pm tables (see `shared/thermal/FLIR-FORMAT.md` §3–§5).

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
    /// Lossless JPEG-LS (decoded with CharLS).
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
pub(crate) fn decode_raw_data(
    record: &[u8],
    base: u64,
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

/// Decodes a single-component lossless JPEG-LS stream of exactly `width × height`.
fn decode_jpeg_ls(payload: &[u8], width: u32, height: u32) -> Result<Vec<u16>, String> {
    // A JPEG-LS stream cut short makes CharLS spend seconds before it gives up (fuzzing
    // found 8 s in release for a 3.9 KB input), so require the end-of-image marker first.
    // Writers pad after it with zeros (the T1030sc .csq does).
    let end = payload.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if end < 2 || payload[end - 2..end] != [0xFF, 0xD9] {
        return Err("jpeg-ls stream has no end-of-image marker (truncated or corrupt)".to_string());
    }
    let mut codec = charls::CharLS::default();
    // Check the header before decoding so a forged size cannot drive the allocation.
    let info = codec
        .get_frame_info(payload)
        .map_err(|e| format!("jpeg-ls header: {e}"))?;
    if info.width != width || info.height != height {
        return Err(format!(
            "jpeg-ls stream is {}x{} but the record declares {width}x{height}",
            info.width, info.height
        ));
    }
    if info.component_count != 1 || !(2..=16).contains(&info.bits_per_sample) {
        return Err(format!(
            "jpeg-ls stream has {} components of {} bits, expected 1 component of up to 16 bits",
            info.component_count, info.bits_per_sample
        ));
    }
    let pixels = width as usize * height as usize;
    // A CharLS decoder reads the header once; decoding needs a fresh one.
    let bytes = charls::CharLS::default()
        .decode(payload)
        .map_err(|e| format!("jpeg-ls: {e}"))?;
    if info.bits_per_sample <= 8 {
        if bytes.len() != pixels {
            return Err(format!(
                "jpeg-ls decoded {} bytes, expected {pixels}",
                bytes.len()
            ));
        }
        return Ok(bytes.into_iter().map(u16::from).collect());
    }
    if bytes.len() != pixels * 2 {
        return Err(format!(
            "jpeg-ls decoded {} bytes, expected {}",
            bytes.len(),
            pixels * 2
        ));
    }
    // CharLS writes samples wider than 8 bits in native byte order.
    let native = if cfg!(target_endian = "little") {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    };
    Ok(words_to_u16(&bytes, native))
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
