//! JPEG marker walk: reassembles the FLIR `APP1` chunks into one FFF stream and reads
//! the EXIF IFD0 `Make`/`Model` (the fallback camera name when FLIR's own field is
//! empty, as on DJI Zenmuse XT2 files).

use super::FlirError;
use std::collections::BTreeMap;

/// Bytes of one `APP1` segment's FLIR chunk header: `FLIR\0`, a version byte, the
/// chunk index and the last chunk index.
const FLIR_CHUNK_HEADER: usize = 8;

/// What the JPEG walk found before the image data.
#[derive(Debug, Default)]
pub(crate) struct JpegScan {
    /// The FFF stream, reassembled from the FLIR `APP1` chunks in index order.
    pub fff: Vec<u8>,
    /// EXIF IFD0 `Make`, when present.
    pub exif_make: Option<String>,
    /// EXIF IFD0 `Model`, when present.
    pub exif_model: Option<String>,
}

/// True when the bytes start like a JPEG file.
pub(crate) fn looks_like_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8])
}

/// One marker segment before the first scan.
pub(crate) struct Segment<'a> {
    /// The marker byte (the `XX` of `0xFFXX`).
    marker: u8,
    /// Where the marker starts in the file.
    at: usize,
    /// The segment's bytes after its length field.
    payload: &'a [u8],
}

/// The marker segments of a JPEG, in order, up to its first scan (`SOS`) or its end.
///
/// Tolerates `0xFF` fill bytes and junk between segments (a DJI XT2 firmware writes 14
/// stray bytes after its last DHT segment) by resynchronising on the next marker. A
/// segment cut off before its declared end is an error, after which the walk stops.
pub(crate) struct Segments<'a> {
    bytes: &'a [u8],
    pos: usize,
    done: bool,
}

/// Walks `bytes`, which must start with a JPEG SOI marker (see [`looks_like_jpeg`]).
pub(crate) fn segments(bytes: &[u8]) -> Segments<'_> {
    Segments {
        bytes,
        pos: 2,
        done: !looks_like_jpeg(bytes),
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = Result<Segment<'a>, FlirError>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.bytes;
        while !self.done {
            // Find the next marker: an 0xFF followed by a byte that is neither 0x00
            // (stuffing) nor 0xFF (fill). Anything else on the way is junk we skip.
            let mut pos = self.pos;
            while pos < bytes.len() && bytes[pos] != 0xFF {
                pos += 1;
            }
            while pos + 1 < bytes.len() && bytes[pos + 1] == 0xFF {
                pos += 1;
            }
            if pos + 1 >= bytes.len() {
                break;
            }
            let marker = bytes[pos + 1];
            let marker_at = pos;
            self.pos = pos + 2;
            match marker {
                0x00 => continue,
                // Standalone markers without a length field.
                0x01 | 0xD0..=0xD7 => continue,
                // Start of scan or end of image: the image data follows.
                0xDA | 0xD9 => break,
                _ => {}
            }
            let pos = self.pos;
            if pos + 2 > bytes.len() {
                self.done = true;
                return Some(Err(FlirError::Jpeg {
                    offset: marker_at as u64,
                    reason: format!("segment 0xFF{marker:02X} is cut off before its length"),
                }));
            }
            let len = usize::from(u16::from_be_bytes([bytes[pos], bytes[pos + 1]]));
            if len < 2 || pos + len > bytes.len() {
                self.done = true;
                return Some(Err(FlirError::Jpeg {
                    offset: marker_at as u64,
                    reason: format!(
                        "segment 0xFF{marker:02X} declares {len} bytes but {} remain",
                        bytes.len() - pos
                    ),
                }));
            }
            self.pos = pos + len;
            return Some(Ok(Segment {
                marker,
                at: marker_at,
                payload: &bytes[pos + 2..pos + len],
            }));
        }
        self.done = true;
        None
    }
}

/// Width, height and colour components (1 or 3) of an 8-bit baseline or progressive
/// JPEG, from its frame header; `None` for anything else (lossless and arithmetic-coded
/// JPEGs, which PDF readers do not decode, included).
pub fn jpeg_geometry(jpeg: &[u8]) -> Option<(u32, u32, u8)> {
    if !looks_like_jpeg(jpeg) {
        return None;
    }
    for segment in segments(jpeg) {
        let Segment {
            marker, payload, ..
        } = segment.ok()?;
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if !is_sof {
            continue;
        }
        if payload.len() < 6 || payload[0] != 8 {
            return None;
        }
        let h = u32::from(u16::from_be_bytes([payload[1], payload[2]]));
        let w = u32::from(u16::from_be_bytes([payload[3], payload[4]]));
        let comps = payload[5];
        let supported = matches!(marker, 0xC0..=0xC2);
        return (supported && w > 0 && h > 0 && matches!(comps, 1 | 3)).then_some((w, h, comps));
    }
    None
}

/// Walks the JPEG's markers up to the first scan and collects the FLIR chunks.
pub(crate) fn scan(bytes: &[u8]) -> Result<JpegScan, FlirError> {
    if !looks_like_jpeg(bytes) {
        return Err(FlirError::NotFlir {
            reason: "file does not start with a JPEG SOI marker".into(),
        });
    }
    let mut chunks: BTreeMap<u8, &[u8]> = BTreeMap::new();
    let mut declared_last: Option<(u8, usize)> = None;
    let mut result = JpegScan::default();
    for segment in segments(bytes) {
        let Segment {
            marker,
            at: marker_at,
            payload,
        } = segment?;
        if marker == 0xE1 {
            if payload.starts_with(b"FLIR\0") && payload.len() >= FLIR_CHUNK_HEADER {
                let index = payload[6];
                let last = payload[7];
                match declared_last {
                    None => declared_last = Some((last, marker_at)),
                    Some((first_last, _)) if first_last != last => {
                        return Err(FlirError::Chunks {
                            reason: format!(
                                "chunk {index} at file offset {marker_at:#x} declares {} chunks, earlier chunks declared {}",
                                u32::from(last) + 1,
                                u32::from(first_last) + 1
                            ),
                        });
                    }
                    Some(_) => {}
                }
                if chunks
                    .insert(index, &payload[FLIR_CHUNK_HEADER..])
                    .is_some()
                {
                    return Err(FlirError::Chunks {
                        reason: format!("duplicate chunk {index} at file offset {marker_at:#x}"),
                    });
                }
            } else if payload.starts_with(b"Exif\0\0") {
                let (make, model) = exif_make_model(&payload[6..]);
                result.exif_make = result.exif_make.or(make);
                result.exif_model = result.exif_model.or(model);
            }
        }
    }
    let Some((last, _)) = declared_last else {
        return Err(FlirError::NotFlir {
            reason: "JPEG has no FLIR APP1 segment (not a FLIR radiometric JPEG; DJI H20T/M30T/M3T-style R-JPEGs use a proprietary format)".into(),
        });
    };
    let missing: Vec<String> = (0..=last)
        .filter(|i| !chunks.contains_key(i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(FlirError::Chunks {
            reason: format!(
                "missing chunk(s) {} of {}",
                missing.join(", "),
                u32::from(last) + 1
            ),
        });
    }
    if let Some((&extra, _)) = chunks.range(last.saturating_add(1)..).next() {
        if extra > last {
            return Err(FlirError::Chunks {
                reason: format!(
                    "chunk {extra} is beyond the declared count of {}",
                    u32::from(last) + 1
                ),
            });
        }
    }
    let total: usize = chunks.values().map(|c| c.len()).sum();
    let mut fff = Vec::with_capacity(total);
    for c in chunks.values() {
        fff.extend_from_slice(c);
    }
    result.fff = fff;
    Ok(result)
}

/// Reads IFD0 `Make` (0x010F) and `Model` (0x0110) from a TIFF-structured EXIF block.
/// Best effort: anything malformed yields `None`, never an error, since the names are
/// only a fallback for display.
fn exif_make_model(tiff: &[u8]) -> (Option<String>, Option<String>) {
    let read_u16 = |at: usize, le: bool| -> Option<u16> {
        let b = tiff.get(at..at + 2)?;
        Some(if le {
            u16::from_le_bytes([b[0], b[1]])
        } else {
            u16::from_be_bytes([b[0], b[1]])
        })
    };
    let read_u32 = |at: usize, le: bool| -> Option<u32> {
        let b = tiff.get(at..at + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    };
    let le = match tiff.get(0..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return (None, None),
    };
    let Some(ifd) = read_u32(4, le).map(|v| v as usize) else {
        return (None, None);
    };
    let Some(count) = read_u16(ifd, le) else {
        return (None, None);
    };
    let mut make = None;
    let mut model = None;
    for i in 0..usize::from(count.min(512)) {
        let entry = ifd + 2 + 12 * i;
        let (Some(tag), Some(kind), Some(n)) = (
            read_u16(entry, le),
            read_u16(entry + 2, le),
            read_u32(entry + 4, le),
        ) else {
            break;
        };
        if kind != 2 || !(tag == 0x010F || tag == 0x0110) {
            continue;
        }
        let n = n as usize;
        let start = if n <= 4 {
            entry + 8
        } else {
            match read_u32(entry + 8, le) {
                Some(o) => o as usize,
                None => continue,
            }
        };
        let Some(raw) = tiff.get(start..start.saturating_add(n)) else {
            continue;
        };
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let text = String::from_utf8_lossy(&raw[..end]).trim().to_string();
        if text.is_empty() {
            continue;
        }
        if tag == 0x010F {
            make = Some(text);
        } else {
            model = Some(text);
        }
    }
    (make, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_geometry_reads_the_frame_header() {
        // SOI, an APP0 of 4 bytes, SOF0 (8 bit, 2 x 3, 3 components), SOS.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00,
            0x03, 0x00, 0x02, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xDA,
        ];
        assert_eq!(jpeg_geometry(&jpeg), Some((2, 3, 3)));
        assert_eq!(jpeg_geometry(b"\x89PNG"), None);
        assert_eq!(jpeg_geometry(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]), None);
        // Truncated inside the frame header.
        assert_eq!(jpeg_geometry(&jpeg[..14]), None);
    }
}
