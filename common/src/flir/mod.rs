//! FLIR radiometric files: R-JPEG (`.jpg`), single FFF frames (`.fff`) and multi-frame
//! sequences (`.seq`, `.csq`).
//!
//! ```text
//! R-JPEG ──APP1 "FLIR" chunks──▶ FFF stream ─┐
//! .fff / .seq / .csq ── FFF frames back to back ┴─▶ header ▶ directory ▶ records
//!                                               RawData · CameraInfo · GPS · EmbeddedImage
//! ```
//!
//! Byte order is decided per structure, never globally (the FFF header of a DJI XT2 is
//! little-endian while a FLIR handheld's is big-endian; the RawData of a ThermaCAM EX320
//! is big-endian). Every length field is checked against the bytes that are really
//! there and against [`ParseLimits`] before anything is allocated, and every malformed
//! input is a [`FlirError`] naming what was wrong and at which offset.
//!
//! Sequences are read lazily through [`std::io::Read`] + [`std::io::Seek`]: one frame
//! in memory at a time, whatever the file's length. A record that runs past the end of
//! the file is clipped and the frame notes `truncated_bytes` (the last T1030sc `.csq`
//! frame declares 4 bytes of padding the file does not hold); decoders still verify
//! their payload, so a really truncated image is an error. Malformed optional records
//! (GPS, visual image) become the frame's `warnings`; the thermal data still counts.
//!
//! # Known limits (found by fuzzing, left as they are)
//!
//! - A forged PNG or JPEG-LS header matching a forged RawData size (up to 8192×8192)
//!   makes the decoder allocate the full 128 MiB frame before the data turns out short:
//!   bounded by [`ParseLimits`], but thousands of times the input.
//! - In a sequence, a corrupted record length in one frame moves where the next frame is
//!   looked for; the walk ends there, so later frames are not counted. The frames before
//!   still read, and the damaged frame reports `truncated_bytes` or `TooLarge`.

mod bytes;
mod fff;
mod jpeg;
mod records;

pub use bytes::ByteOrder;
pub use jpeg::jpeg_geometry;
pub use records::{
    CameraInfo, CameraLimits, CaptureTime, EmbeddedImage, GpsInfo, RawEncoding, VisualImageKind,
};

use crate::image::{RawFrame, TemperatureImage};
use crate::radiometry::{
    frame_to_celsius, ConversionReport, InvalidParam, ParamOverrides, RawToCelsius,
};
use std::io::{Read, Seek, SeekFrom};

/// Everything that can be wrong with a FLIR file.
///
/// Offsets are byte positions in the file, except inside an R-JPEG, where they are
/// positions in the FFF stream reassembled from its `APP1` chunks ("fff offset").
#[derive(Debug, thiserror::Error)]
pub enum FlirError {
    /// Not a FLIR radiometric file at all.
    #[error("not a FLIR radiometric file: {reason}")]
    NotFlir {
        /// Why.
        reason: String,
    },
    /// A JPEG segment is malformed.
    #[error("malformed JPEG at file offset {offset:#x}: {reason}")]
    Jpeg {
        /// Where the segment starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The FLIR `APP1` chunks do not reassemble.
    #[error("FLIR APP1 chunks: {reason}")]
    Chunks {
        /// What is wrong.
        reason: String,
    },
    /// A structure ends before a field it must contain.
    #[error("truncated {what}: {field} at fff offset {offset:#x} needs {needed} bytes, {available} available")]
    Truncated {
        /// The structure.
        what: &'static str,
        /// The field being read.
        field: &'static str,
        /// Where the field starts.
        offset: u64,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// The FFF header is malformed.
    #[error("FFF header at fff offset {offset:#x}: {reason}")]
    FffHeader {
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record is malformed or missing.
    #[error("{record} at fff offset {offset:#x}: {reason}")]
    Record {
        /// Which record.
        record: &'static str,
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file exceeds a configured size limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A frame declares more pixels than the limits allow (checked from its header,
    /// before anything is decoded or allocated).
    #[error("{what}: {width}×{height} pixels exceeds the limit of {limit} pixels")]
    TooManyPixels {
        /// The frame, or the file's running total.
        what: String,
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The limit that applied.
        limit: u64,
    },
    /// A frame index past the end of a sequence.
    #[error("frame {index} does not exist: the file has {count} frame(s)")]
    NoSuchFrame {
        /// Requested (0-based).
        index: usize,
        /// Frames in the file.
        count: usize,
    },
    /// The radiometric parameters (from the file, or after overrides) are unusable.
    #[error("invalid radiometric parameters: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidParams(Vec<InvalidParam>),
    /// Reading the underlying file failed.
    #[error("read error at offset {offset:#x}: {source}")]
    Io {
        /// Where the read started.
        offset: u64,
        /// The IO error.
        source: std::io::Error,
    },
}

/// Bounds on what a file may make the parser allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest R-JPEG read into memory (the T640's, with a 5 MP visual image inside,
    /// is 1.5 MB).
    pub max_jpeg_bytes: u64,
    /// Largest single FFF frame of a sequence.
    pub max_frame_bytes: u64,
    /// Most pixels one frame may declare. A compressed frame (PNG, JPEG-LS) of a few
    /// hundred bytes can declare 8192×8192; this is checked from the header, before
    /// decoding. The default, 2048×2048, is above the largest radiometric cameras
    /// (1280×1024 sensors, 2048×1536 UltraMax images).
    pub max_frame_pixels: u64,
    /// Most pixels all frames read from one file may declare together (pixels ×
    /// frames): bounds the work one uploaded sequence can cause. Unlimited by default
    /// (an agent replays long sequences); the hub sets it for uploads.
    pub max_file_pixels: u64,
}

/// [`ParseLimits::max_frame_pixels`] by default.
pub const DEFAULT_MAX_FRAME_PIXELS: u64 = 2048 * 2048;

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_jpeg_bytes: 64 << 20,
            max_frame_bytes: 64 << 20,
            max_frame_pixels: DEFAULT_MAX_FRAME_PIXELS,
            max_file_pixels: u64::MAX,
        }
    }
}

/// What kind of container a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerKind {
    /// A JPEG with the FFF stream in `APP1` segments.
    RJpeg,
    /// One or more FFF frames back to back (`.fff`, `.seq`, `.csq`).
    FffSequence,
}

/// One radiometric frame: counts plus everything needed to turn them into °C.
#[derive(Debug, Clone)]
pub struct FlirFrame {
    /// 0-based index in the file.
    pub index: usize,
    /// Where the frame's FFF header starts in the file (0 for an R-JPEG).
    pub offset: u64,
    /// The FFF creator string (`"DJI"`, `"ResearchIR"`, `"RTP"`, …).
    pub creator: String,
    /// FFF format version (100..199).
    pub fff_version: u32,
    /// Byte order of the FFF header and directory.
    pub header_order: ByteOrder,
    /// Raw detector counts.
    pub raw: RawFrame,
    /// How the counts were stored.
    pub raw_encoding: RawEncoding,
    /// The RawData record's subtype in the directory (2 raw, 3 PNG, 4 JPEG-LS).
    pub raw_subtype: u16,
    /// Byte order of the RawData record.
    pub raw_order: ByteOrder,
    /// The CameraInfo record.
    pub camera: CameraInfo,
    /// GPS position, when the file carries a valid fix.
    pub gps: Option<GpsInfo>,
    /// The visual (daylight) image, when present.
    pub visual: Option<EmbeddedImage>,
    /// Bytes the frame's directory declares past the end of the file (the last frame of
    /// some `.csq` files is 4 bytes short; the decoders still verify the payload).
    pub truncated_bytes: u64,
    /// Problems with optional records (GPS, visual image) that did not stop the parse.
    pub warnings: Vec<String>,
    /// Set when the counts are temperature-linear (kelvin = count × this), as in Chitti
    /// stream evidence from a temperature-linear camera
    /// ([`crate::evidence::evidence_png_frame`]); FLIR files never set it. The camera
    /// then applied its object parameters itself, and overrides cannot change them.
    pub kelvin_per_count: Option<f64>,
}

impl FlirFrame {
    /// The raw → °C converter for this frame, with the thermographer's corrections
    /// (ignored for temperature-linear counts, whose parameters the camera applied).
    pub fn converter(&self, overrides: &ParamOverrides) -> Result<RawToCelsius, FlirError> {
        match self.kelvin_per_count {
            Some(k) => RawToCelsius::temperature_linear(k, self.camera.params),
            None => RawToCelsius::new(self.camera.params.with_overrides(overrides)),
        }
        .map_err(FlirError::InvalidParams)
    }

    /// Converts the whole frame to °C (lookup table over the frame's raw range).
    pub fn temperatures(
        &self,
        overrides: &ParamOverrides,
    ) -> Result<(TemperatureImage, ConversionReport), FlirError> {
        Ok(frame_to_celsius(&self.converter(overrides)?, &self.raw))
    }
}

/// Parses one FFF frame held in memory. `offset` is its position in the file.
/// How many pixels the next frame may declare, and why that many.
#[derive(Debug, Clone, Copy)]
struct PixelBudget {
    limit: u64,
    /// The file's running total is the tighter bound.
    file_total: bool,
}

impl PixelBudget {
    fn check(self, index: usize, width: u32, height: u32) -> Result<(), FlirError> {
        if u64::from(width) * u64::from(height) <= self.limit {
            return Ok(());
        }
        Err(FlirError::TooManyPixels {
            what: if self.file_total {
                format!("frame {index} would take the file past its pixel budget")
            } else {
                format!("frame {index}")
            },
            width,
            height,
            limit: self.limit,
        })
    }
}

fn parse_frame(
    blob: &[u8],
    offset: u64,
    index: usize,
    budget: PixelBudget,
) -> Result<FlirFrame, FlirError> {
    let header = fff::parse_header(blob, offset)?;
    let dir_start = header.directory_offset as usize;
    let dir_end = fff::directory_end(&header);
    if dir_end > blob.len() as u64 {
        return Err(FlirError::Truncated {
            what: "fff directory",
            field: "entries",
            offset: offset + dir_start as u64,
            needed: dir_end - dir_start as u64,
            available: (blob.len() as u64).saturating_sub(dir_start as u64),
        });
    }
    let entries = fff::parse_directory(
        &header,
        &blob[dir_start..dir_end as usize],
        offset + dir_start as u64,
    )?;
    let extent = fff::frame_extent(&header, &entries);
    let truncated_bytes = extent.saturating_sub(blob.len() as u64);
    let record_bytes = |e: &fff::RecordEntry, what: &'static str| -> Result<&[u8], FlirError> {
        let start = e.offset as usize;
        if start > blob.len() || (start < fff::HEADER_LEN && e.length > 0) {
            return Err(FlirError::Record {
                record: what,
                offset: offset + u64::from(e.offset),
                reason: format!(
                    "record offset lies outside the frame ({} bytes)",
                    blob.len()
                ),
            });
        }
        // A record running past the end of the data is clipped; the decoders then
        // check that what they need is really there.
        let end = (e.end().min(blob.len() as u64)) as usize;
        Ok(&blob[start..end])
    };
    let find = |kind: u16| entries.iter().find(|e| e.kind == kind);

    let raw_entry = find(fff::record_type::RAW_DATA).ok_or_else(|| FlirError::Record {
        record: "raw data record",
        offset,
        reason: "the frame has no RawData record (not a radiometric image)".into(),
    })?;
    let raw_base = offset + u64::from(raw_entry.offset);
    let (raw, raw_encoding, raw_order) = records::decode_raw_data(
        record_bytes(raw_entry, "raw data record")?,
        raw_base,
        &|width, height| budget.check(index, width, height),
    )?;

    let cam_entry = find(fff::record_type::CAMERA_INFO).ok_or_else(|| FlirError::Record {
        record: "camera info record",
        offset,
        reason: "the frame has no CameraInfo record (no radiometric parameters)".into(),
    })?;
    let camera = records::parse_camera_info(
        record_bytes(cam_entry, "camera info record")?,
        offset + u64::from(cam_entry.offset),
    )?;

    let mut warnings = Vec::new();
    let mut gps = None;
    if let Some(e) = find(fff::record_type::GPS_INFO).filter(|e| e.length > 0) {
        match record_bytes(e, "gps record")
            .and_then(|r| records::parse_gps(r, offset + u64::from(e.offset)))
        {
            Ok(g) => gps = g,
            Err(err) => warnings.push(format!("gps ignored: {err}")),
        }
    }
    let mut visual = None;
    if let Some(e) = find(fff::record_type::EMBEDDED_IMAGE).filter(|e| e.length > 0) {
        match record_bytes(e, "embedded image record")
            .and_then(|r| records::parse_embedded_image(r, offset + u64::from(e.offset)))
        {
            Ok(v) => visual = Some(v),
            Err(err) => warnings.push(format!("visual image ignored: {err}")),
        }
    }
    Ok(FlirFrame {
        index,
        offset,
        creator: header.creator,
        fff_version: header.version,
        header_order: header.order,
        raw,
        raw_encoding,
        raw_subtype: raw_entry.subtype,
        raw_order,
        camera,
        gps,
        visual,
        truncated_bytes,
        warnings,
        kelvin_per_count: None,
    })
}

/// Parses the first (for an R-JPEG, the only) frame of a file held in memory.
pub fn parse_bytes(bytes: &[u8]) -> Result<FlirFrame, FlirError> {
    let mut file = FlirFile::open(std::io::Cursor::new(bytes), ParseLimits::default())?;
    file.frame(0)
}

/// The encoded payload of the first frame's RawData record (the 16-bit PNG, JPEG-LS
/// stream or uncompressed words, without the record's 32-byte header), exactly the
/// bytes [`parse_bytes`] hands to the decoder. For an R-JPEG the FFF stream is first
/// reassembled from its `APP1` chunks, so a PNG split across segments comes back whole.
///
/// Not part of the API: benchmarks use it to time the codec alone.
#[doc(hidden)]
pub fn raw_data_payload(bytes: &[u8]) -> Result<Vec<u8>, FlirError> {
    let scanned;
    let fff_stream = if jpeg::looks_like_jpeg(bytes) {
        scanned = jpeg::scan(bytes)?.fff;
        &scanned[..]
    } else {
        bytes
    };
    let header = fff::parse_header(fff_stream, 0)?;
    let dir = fff_stream
        .get(header.directory_offset as usize..fff::directory_end(&header) as usize)
        .ok_or_else(|| FlirError::NotFlir {
            reason: "fff directory lies past the end of the data".into(),
        })?;
    let entries = fff::parse_directory(&header, dir, u64::from(header.directory_offset))?;
    entries
        .iter()
        .find(|e| e.kind == fff::record_type::RAW_DATA)
        .and_then(|e| {
            let end = e.end().min(fff_stream.len() as u64) as usize;
            fff_stream.get(e.offset as usize + records::PAYLOAD_AT..end)
        })
        .map(<[u8]>::to_vec)
        .ok_or_else(|| FlirError::NotFlir {
            reason: "no readable RawData record".into(),
        })
}

/// An open FLIR file. Frames are read on demand; a sequence never sits in memory whole.
pub struct FlirFile<R> {
    reader: R,
    kind: ContainerKind,
    limits: ParseLimits,
    /// The FFF stream of an R-JPEG (`None` for sequences, which are read lazily).
    jpeg_fff: Option<Vec<u8>>,
    exif_make: Option<String>,
    exif_model: Option<String>,
    /// Frame start offsets found so far (sequences), so seeking to frame N walks once.
    frame_starts: Vec<u64>,
    /// True once the walk has reached the end of the file.
    walked_to_end: bool,
    /// Pixels of the frames read so far (against `limits.max_file_pixels`).
    pixels_read: u64,
}

impl<R: Read + Seek> FlirFile<R> {
    /// Identifies the container and, for an R-JPEG, reassembles its FFF stream.
    pub fn open(mut reader: R, limits: ParseLimits) -> Result<Self, FlirError> {
        let len = reader
            .seek(SeekFrom::End(0))
            .and_then(|len| reader.seek(SeekFrom::Start(0)).map(|_| len))
            .map_err(|source| FlirError::Io { offset: 0, source })?;
        let mut magic = [0u8; 4];
        let got = read_up_to(&mut reader, &mut magic, 0)?;
        let magic = &magic[..got];
        if jpeg::looks_like_jpeg(magic) {
            if len > limits.max_jpeg_bytes {
                return Err(FlirError::TooLarge {
                    what: "JPEG file",
                    size: len,
                    limit: limits.max_jpeg_bytes,
                });
            }
            let mut bytes = Vec::with_capacity(len as usize);
            reader
                .seek(SeekFrom::Start(0))
                .and_then(|_| {
                    reader
                        .by_ref()
                        .take(limits.max_jpeg_bytes)
                        .read_to_end(&mut bytes)
                })
                .map_err(|source| FlirError::Io { offset: 0, source })?;
            let scan = jpeg::scan(&bytes)?;
            return Ok(Self {
                reader,
                kind: ContainerKind::RJpeg,
                limits,
                jpeg_fff: Some(scan.fff),
                exif_make: scan.exif_make,
                exif_model: scan.exif_model,
                frame_starts: vec![0],
                walked_to_end: true,
                pixels_read: 0,
            });
        }
        if !fff::has_magic(magic) {
            return Err(FlirError::NotFlir {
                reason: if magic.is_empty() {
                    "the file is empty".into()
                } else {
                    format!("file starts with {magic:02x?}, neither a JPEG nor an FFF header")
                },
            });
        }
        Ok(Self {
            reader,
            kind: ContainerKind::FffSequence,
            limits,
            jpeg_fff: None,
            exif_make: None,
            exif_model: None,
            frame_starts: vec![0],
            walked_to_end: false,
            pixels_read: 0,
        })
    }

    /// The container kind.
    pub fn kind(&self) -> ContainerKind {
        self.kind
    }

    /// EXIF `Make` and `Model` of an R-JPEG (a fallback camera name: DJI's XT2 leaves
    /// FLIR's own model field empty).
    pub fn exif_make_model(&self) -> (Option<&str>, Option<&str>) {
        (self.exif_make.as_deref(), self.exif_model.as_deref())
    }

    /// Counts the frames by walking the FFF headers (records are not decoded).
    pub fn frame_count(&mut self) -> Result<usize, FlirError> {
        while !self.walked_to_end {
            self.walk_one()?;
        }
        Ok(self.frame_starts.len())
    }

    /// Reads frame `index` (0-based).
    pub fn frame(&mut self, index: usize) -> Result<FlirFrame, FlirError> {
        if let Some(fff) = &self.jpeg_fff {
            if index > 0 {
                return Err(FlirError::NoSuchFrame { index, count: 1 });
            }
            let budget = self.budget();
            let frame = parse_frame(fff, 0, 0, budget)?;
            self.pixels_read += u64::from(frame.raw.width()) * u64::from(frame.raw.height());
            return Ok(frame);
        }
        while self.frame_starts.len() <= index && !self.walked_to_end {
            self.walk_one()?;
        }
        let Some(&start) = self.frame_starts.get(index) else {
            return Err(FlirError::NoSuchFrame {
                index,
                count: self.frame_starts.len(),
            });
        };
        let (header, entries) = self.read_header_and_directory(start)?;
        let extent = fff::frame_extent(&header, &entries);
        if extent > self.limits.max_frame_bytes {
            return Err(FlirError::TooLarge {
                what: "FFF frame",
                size: extent,
                limit: self.limits.max_frame_bytes,
            });
        }
        let mut blob = Vec::new();
        self.reader
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.reader.by_ref().take(extent).read_to_end(&mut blob))
            .map_err(|source| FlirError::Io {
                offset: start,
                source,
            })?;
        let frame = parse_frame(&blob, start, index, self.budget())?;
        self.pixels_read += u64::from(frame.raw.width()) * u64::from(frame.raw.height());
        Ok(frame)
    }

    /// What the next frame may declare: the per-frame limit, or what is left of the
    /// file's.
    fn budget(&self) -> PixelBudget {
        let left = self.limits.max_file_pixels.saturating_sub(self.pixels_read);
        PixelBudget {
            limit: left.min(self.limits.max_frame_pixels),
            file_total: left < self.limits.max_frame_pixels,
        }
    }

    /// Iterates over every frame lazily; stops after the first error.
    pub fn frames(&mut self) -> Frames<'_, R> {
        Frames {
            file: self,
            next: 0,
            failed: false,
        }
    }

    /// Reads the header and directory of the frame at `start`.
    fn read_header_and_directory(
        &mut self,
        start: u64,
    ) -> Result<(fff::FffHeader, Vec<fff::RecordEntry>), FlirError> {
        let mut head = [0u8; fff::HEADER_LEN];
        self.reader
            .seek(SeekFrom::Start(start))
            .map_err(|source| FlirError::Io {
                offset: start,
                source,
            })?;
        let got = read_up_to(&mut self.reader, &mut head, start)?;
        let header = fff::parse_header(&head[..got], start)?;
        let dir_len = header.entry_count as usize * fff::ENTRY_LEN; // ≤ 128 KiB
        let dir_at = start + u64::from(header.directory_offset);
        let mut dir = vec![0u8; dir_len];
        self.reader
            .seek(SeekFrom::Start(dir_at))
            .map_err(|source| FlirError::Io {
                offset: dir_at,
                source,
            })?;
        let got = read_up_to(&mut self.reader, &mut dir, dir_at)?;
        if got < dir_len {
            return Err(FlirError::Truncated {
                what: "fff directory",
                field: "entries",
                offset: dir_at,
                needed: dir_len as u64,
                available: got as u64,
            });
        }
        let entries = fff::parse_directory(&header, &dir, dir_at)?;
        Ok((header, entries))
    }

    /// Finds where the frame after the last known one starts, or marks the end.
    fn walk_one(&mut self) -> Result<(), FlirError> {
        let Some(&start) = self.frame_starts.last() else {
            self.walked_to_end = true;
            return Ok(());
        };
        let (header, entries) = self.read_header_and_directory(start)?;
        let next = start + fff::frame_extent(&header, &entries);
        // Is there another FFF header right after this frame?
        let mut magic = [0u8; 4];
        self.reader
            .seek(SeekFrom::Start(next))
            .map_err(|source| FlirError::Io {
                offset: next,
                source,
            })?;
        let got = read_up_to(&mut self.reader, &mut magic, next)?;
        if got == 4 && fff::has_magic(&magic) {
            self.frame_starts.push(next);
        } else {
            // End of file, trailing padding, or the short last frame of a `.csq`.
            self.walked_to_end = true;
        }
        Ok(())
    }
}

/// Lazy iterator over the frames of a [`FlirFile`].
pub struct Frames<'a, R> {
    file: &'a mut FlirFile<R>,
    next: usize,
    failed: bool,
}

impl<R: Read + Seek> Iterator for Frames<'_, R> {
    type Item = Result<FlirFrame, FlirError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let index = self.next;
        match self.file.frame(index) {
            Ok(frame) => {
                self.next += 1;
                Some(Ok(frame))
            }
            Err(FlirError::NoSuchFrame { .. }) if index > 0 => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads into `buf` until it is full or the reader is exhausted; returns bytes read.
fn read_up_to<R: Read>(reader: &mut R, buf: &mut [u8], offset: u64) -> Result<usize, FlirError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(FlirError::Io { offset, source }),
        }
    }
    Ok(filled)
}
