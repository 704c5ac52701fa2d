//! Evidence of a stream finding: the radiometric frame as a 16-bit greyscale PNG of raw
//! counts, with the parameters that turn them into °C in a `tEXt` chunk, so the hub can
//! recompute every temperature from the evidence alone (provenance). Files (R-JPEG,
//! .seq, .csq) are their own evidence and are sent as they are.
//!
//! Reading evidence back is one path for everyone ([`read_evidence`]): the hub (grids,
//! thermograms, reports) and `chitti-agent inspect` get the same [`FlirFrame`], whose
//! [`FlirFrame::converter`] knows temperature-linear counts, so both print the same °C.

use crate::flir::{
    ByteOrder, CameraInfo, CameraLimits, CaptureTime, FlirError, FlirFrame, RawEncoding,
};
use crate::image::RawFrame;
use crate::radiometry::RadiometricParams;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// The `tEXt` keyword holding [`RadiometricPngMeta`] as JSON.
pub const RADIOMETRY_KEYWORD: &str = "chitti-radiometry";

/// Largest side accepted when decoding, pixels.
pub const MAX_SIDE: u32 = 8192;

/// What travels with the counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiometricPngMeta {
    /// Format version of this record (1).
    pub version: u32,
    /// Camera id.
    pub camera: String,
    /// Capture time by the camera's clock.
    pub captured_at: DateTime<FixedOffset>,
    /// The parameters the counts were taken with (before the thermographer's
    /// overrides, which the finding records separately).
    pub params: RadiometricParams,
    /// The camera's upper saturation limit, °C.
    pub saturated_max_c: Option<f64>,
    /// Set for temperature-linear counts (kelvin = count × this); the Planck
    /// parameters then only record the object parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kelvin_per_count: Option<f64>,
}

/// Evidence could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// PNG encoding failed.
    #[error("cannot encode the evidence png: {0}")]
    Encode(String),
    /// Not a 16-bit greyscale PNG, or damaged.
    #[error("not a radiometric evidence png: {0}")]
    Decode(String),
    /// The radiometry chunk is missing or malformed.
    #[error("evidence png has no valid {RADIOMETRY_KEYWORD} chunk: {0}")]
    Meta(String),
}

/// Encodes raw counts and their parameters as a 16-bit greyscale PNG.
pub fn encode_radiometric_png(
    raw: &RawFrame,
    meta: &RadiometricPngMeta,
) -> Result<Vec<u8>, EvidenceError> {
    let mut out = Vec::new();
    let json = serde_json::to_string(meta).map_err(|e| EvidenceError::Encode(e.to_string()))?;
    {
        let mut encoder = png::Encoder::new(&mut out, raw.width(), raw.height());
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Sixteen);
        // Fast compression: evidence is written on the gateway, per raised finding.
        encoder.set_compression(png::Compression::Fast);
        encoder
            .add_text_chunk(RADIOMETRY_KEYWORD.to_string(), json)
            .map_err(|e| EvidenceError::Encode(e.to_string()))?;
        let mut writer = encoder
            .write_header()
            .map_err(|e| EvidenceError::Encode(e.to_string()))?;
        // PNG samples are big-endian.
        let bytes: Vec<u8> = raw.counts().iter().flat_map(|c| c.to_be_bytes()).collect();
        writer
            .write_image_data(&bytes)
            .map_err(|e| EvidenceError::Encode(e.to_string()))?;
        writer
            .finish()
            .map_err(|e| EvidenceError::Encode(e.to_string()))?;
    }
    Ok(out)
}

/// Decodes evidence written by [`encode_radiometric_png`].
pub fn decode_radiometric_png(
    bytes: &[u8],
) -> Result<(RawFrame, RadiometricPngMeta), EvidenceError> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_limits(png::Limits {
        bytes: (MAX_SIDE as usize) * (MAX_SIDE as usize) * 2,
    });
    let mut reader = decoder
        .read_info()
        .map_err(|e| EvidenceError::Decode(e.to_string()))?;
    let info = reader.info();
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Sixteen {
        return Err(EvidenceError::Decode(format!(
            "{:?} {:?}, expected 16-bit greyscale",
            info.color_type, info.bit_depth
        )));
    }
    let (width, height) = (info.width, info.height);
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(EvidenceError::Decode(format!(
            "{width}x{height} is too large"
        )));
    }
    let meta_text = info
        .uncompressed_latin1_text
        .iter()
        .find(|t| t.keyword == RADIOMETRY_KEYWORD)
        .map(|t| t.text.clone())
        .ok_or_else(|| EvidenceError::Meta("chunk missing".into()))?;
    let meta: RadiometricPngMeta =
        serde_json::from_str(&meta_text).map_err(|e| EvidenceError::Meta(e.to_string()))?;
    let mut buf = vec![
        0u8;
        reader
            .output_buffer_size()
            .ok_or_else(|| EvidenceError::Decode("image too large".into()))?
    ];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| EvidenceError::Decode(e.to_string()))?;
    let counts = buf[..frame.buffer_size()]
        .chunks_exact(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .collect();
    let raw =
        RawFrame::new(width, height, counts).map_err(|e| EvidenceError::Decode(e.to_string()))?;
    Ok((raw, meta))
}

/// What kind of file an evidence blob is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceKind {
    /// A JPEG (FLIR R-JPEG).
    Jpeg,
    /// A FLIR FFF container (`.fff`, `.seq`, `.csq`).
    Fff,
    /// A PNG (the agent's radiometric stream evidence).
    Png,
}

impl EvidenceKind {
    /// Recognises a blob by its magic number.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"FFF\0") {
            Some(Self::Fff)
        } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
            Some(Self::Png)
        } else {
            None
        }
    }

    /// Its media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Fff => "application/x-flir-fff",
            Self::Png => "image/png",
        }
    }
}

/// Evidence that cannot be read as a radiometric frame.
#[derive(Debug, thiserror::Error)]
pub enum ReadEvidenceError {
    /// Not a file kind Chitti reads.
    #[error("evidence is not a FLIR radiometric file or a radiometric PNG (first bytes {0})")]
    UnknownContent(String),
    /// A PNG, but not the agent's radiometric evidence.
    #[error(transparent)]
    Png(#[from] EvidenceError),
    /// A FLIR file that does not parse.
    #[error(transparent)]
    Flir(#[from] FlirError),
}

/// Reads evidence of any kind Chitti stores: the agent's radiometric PNG, or a FLIR
/// file (R-JPEG, FFF; its first frame). The frame's [`FlirFrame::converter`] gives its
/// temperatures, temperature-linear evidence included.
pub fn read_evidence(bytes: &[u8]) -> Result<(EvidenceKind, FlirFrame), ReadEvidenceError> {
    let kind = EvidenceKind::sniff(bytes).ok_or_else(|| {
        ReadEvidenceError::UnknownContent(hex::encode(&bytes[..bytes.len().min(8)]))
    })?;
    let frame = match kind {
        EvidenceKind::Png => evidence_png_frame(bytes)?,
        EvidenceKind::Jpeg | EvidenceKind::Fff => crate::flir::parse_bytes(bytes)?,
    };
    Ok((kind, frame))
}

/// The agent's radiometric PNG as the frame a FLIR parser would have produced: its
/// counts, its parameters, its capture time and saturation limit, and
/// `kelvin_per_count` for temperature-linear counts.
pub fn evidence_png_frame(bytes: &[u8]) -> Result<FlirFrame, EvidenceError> {
    let (raw, meta) = decode_radiometric_png(bytes)?;
    if meta.version != 1 {
        return Err(EvidenceError::Meta(format!(
            "version {} is not supported (expected 1)",
            meta.version
        )));
    }
    Ok(FlirFrame {
        index: 0,
        offset: 0,
        creator: "chitti".into(),
        fff_version: 0,
        header_order: ByteOrder::Big,
        raw,
        raw_encoding: RawEncoding::Png,
        raw_subtype: 0,
        raw_order: ByteOrder::Big,
        camera: CameraInfo {
            params: meta.params,
            model: String::new(),
            part_number: String::new(),
            serial: String::new(),
            software: String::new(),
            lens_model: None,
            lens_part_number: None,
            lens_serial: None,
            field_of_view_deg: None,
            filter_model: None,
            captured_at: Some(CaptureTime(meta.captured_at)),
            limits: CameraLimits {
                saturated_max_c: meta.saturated_max_c,
                ..CameraLimits::default()
            },
            raw_value_range: None,
            raw_value_median: None,
            focus_distance_m: None,
            frame_rate_hz: None,
            byte_order: ByteOrder::Big,
        },
        gps: None,
        visual: None,
        truncated_bytes: 0,
        warnings: Vec::new(),
        kelvin_per_count: meta.kelvin_per_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> RadiometricParams {
        // A FLIR T560's nominal calibration, as the agent assumes for a V4L2 stream.
        crate::agent_config::nominal_camera_params()
    }

    #[test]
    fn counts_and_parameters_round_trip_exactly() {
        let counts: Vec<u16> = (0..64 * 48).map(|i| (i * 37 % 65536) as u16).collect();
        let raw = RawFrame::new(64, 48, counts).unwrap();
        let meta = RadiometricPngMeta {
            version: 1,
            camera: "cam-1".into(),
            captured_at: DateTime::parse_from_rfc3339("2026-11-30T03:12:45.120+05:30").unwrap(),
            params: params(),
            saturated_max_c: Some(180.0),
            kelvin_per_count: None,
        };
        let png = encode_radiometric_png(&raw, &meta).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let (back, back_meta) = decode_radiometric_png(&png).unwrap();
        assert_eq!(back, raw);
        assert_eq!(back_meta, meta);
    }

    #[test]
    fn other_images_are_rejected_with_a_reason() {
        let err = decode_radiometric_png(b"not a png at all").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("not a radiometric evidence png"),
            "{err}"
        );
        // An 8-bit PNG without the chunk.
        let mut out = Vec::new();
        {
            let mut e = png::Encoder::new(&mut out, 2, 2);
            e.set_color(png::ColorType::Grayscale);
            e.set_depth(png::BitDepth::Eight);
            let mut w = e.write_header().unwrap();
            w.write_image_data(&[0, 1, 2, 3]).unwrap();
        }
        let err = decode_radiometric_png(&out).unwrap_err();
        assert!(
            err.to_string().contains("expected 16-bit greyscale"),
            "{err}"
        );
    }

    #[test]
    fn temperature_linear_evidence_reads_back_in_kelvin_per_count() {
        use crate::analysis::{analyze_frame, AnalysisOptions};
        use crate::radiometry::ParamOverrides;
        // 343.15 K in one corner pixel, 293.15 K elsewhere, at 0.01 K per count.
        let mut counts = vec![29_315u16; 32 * 24];
        counts[0] = 34_315;
        let raw = RawFrame::new(32, 24, counts).unwrap();
        let meta = RadiometricPngMeta {
            version: 1,
            camera: "lwir".into(),
            captured_at: DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap(),
            params: params(),
            saturated_max_c: Some(60.0),
            kelvin_per_count: Some(0.01),
        };
        let png = encode_radiometric_png(&raw, &meta).unwrap();
        let (kind, frame) = read_evidence(&png).unwrap();
        assert_eq!(kind, EvidenceKind::Png);
        let overrides = ParamOverrides {
            emissivity: Some(0.5),
            ..ParamOverrides::default()
        };
        let (image, _) = frame.temperatures(&overrides).unwrap();
        assert!((f64::from(image.celsius()[0]) - 70.0).abs() < 1e-4);
        assert!((f64::from(image.celsius()[1]) - 20.0).abs() < 1e-4);
        // The saturation limit (60 °C) is judged on the linear scale too: one pixel.
        let table = crate::severity::SeverityCatalog::builtin();
        let table = table.get("utility-absolute").unwrap();
        let analysis = analyze_frame(&frame, table, &AnalysisOptions::default()).unwrap();
        assert_eq!(analysis.saturated_px, 1);
    }

    #[test]
    fn unknown_and_newer_evidence_is_refused_by_name() {
        let err = read_evidence(b"hello world").unwrap_err();
        assert!(err.to_string().contains("68656c6c6f20776f"), "{err}");
        let raw = RawFrame::new(2, 2, vec![1, 2, 3, 4]).unwrap();
        let meta = RadiometricPngMeta {
            version: 2,
            camera: "c".into(),
            captured_at: DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap(),
            params: params(),
            saturated_max_c: None,
            kelvin_per_count: None,
        };
        let png = encode_radiometric_png(&raw, &meta).unwrap();
        let err = read_evidence(&png).unwrap_err();
        assert!(
            err.to_string().contains("version 2 is not supported"),
            "{err}"
        );
    }
}
