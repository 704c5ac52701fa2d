//! The FFF container: a 64-byte header, a directory of 32-byte record entries and the
//! records they point to. `.fff` files are one FFF stream, R-JPEGs carry one inside
//! their `APP1` chunks, and `.seq`/`.csq` files are FFF streams back to back.

use super::bytes::{ByteOrder, StructView};
use super::FlirError;

/// Size of the FFF header.
pub(crate) const HEADER_LEN: usize = 0x40;
/// Size of one directory entry.
pub(crate) const ENTRY_LEN: usize = 0x20;
/// Upper bound on directory entries; real files have 6–20. Bounds the allocation a
/// corrupt count field could drive.
pub(crate) const MAX_ENTRIES: u32 = 4096;

/// Record types the thermal core reads (FLIR.pm `%FFF`).
pub(crate) mod record_type {
    pub const RAW_DATA: u16 = 0x01;
    pub const EMBEDDED_IMAGE: u16 = 0x0E;
    pub const CAMERA_INFO: u16 = 0x20;
    pub const GPS_INFO: u16 = 0x2B;
}

/// The parsed FFF header.
#[derive(Debug, Clone)]
pub(crate) struct FffHeader {
    pub creator: String,
    pub version: u32,
    pub order: ByteOrder,
    pub directory_offset: u32,
    pub entry_count: u32,
}

/// One directory entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordEntry {
    pub kind: u16,
    pub subtype: u16,
    pub offset: u32,
    pub length: u32,
}

impl RecordEntry {
    /// First byte after the record.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.length)
    }
}

/// True when the bytes start with an FFF (or AFF) magic.
pub(crate) fn has_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(b"FFF\0") || bytes.starts_with(b"AFF\0")
}

/// Parses the 64-byte header at the start of `bytes`. `base` is its offset in the file
/// or stream, used in error messages.
pub(crate) fn parse_header(bytes: &[u8], base: u64) -> Result<FffHeader, FlirError> {
    if bytes.len() < HEADER_LEN {
        return Err(FlirError::Truncated {
            what: "fff header",
            field: "header",
            offset: base,
            needed: HEADER_LEN as u64,
            available: bytes.len() as u64,
        });
    }
    if !has_magic(bytes) {
        return Err(FlirError::FffHeader {
            offset: base,
            reason: format!("bad magic {:02x?}, expected \"FFF\\0\"", &bytes[..4]),
        });
    }
    // exiftool's rule: the version must read 100..199; if it does not in big-endian,
    // the header is little-endian. Neither order giving a plausible version is an error.
    let mut order = ByteOrder::Big;
    let view = StructView::new(bytes, order, base, "fff header");
    let mut version = view.u32(0x14, "version")?;
    if !(100..200).contains(&version) {
        order = ByteOrder::Little;
        version = StructView::new(bytes, order, base, "fff header").u32(0x14, "version")?;
        if !(100..200).contains(&version) {
            return Err(FlirError::FffHeader {
                offset: base + 0x14,
                reason: "format version is not in 100..199 in either byte order".into(),
            });
        }
    }
    let view = StructView::new(bytes, order, base, "fff header");
    let creator = view.text(0x04, 16, "creator")?;
    let directory_offset = view.u32(0x18, "directory offset")?;
    let entry_count = view.u32(0x1c, "directory entry count")?;
    if entry_count > MAX_ENTRIES {
        return Err(FlirError::FffHeader {
            offset: base + 0x1c,
            reason: format!("{entry_count} directory entries (at most {MAX_ENTRIES} accepted)"),
        });
    }
    if (directory_offset as usize) < HEADER_LEN {
        return Err(FlirError::FffHeader {
            offset: base + 0x18,
            reason: format!("directory offset {directory_offset:#x} lies inside the header"),
        });
    }
    Ok(FffHeader {
        creator,
        version,
        order,
        directory_offset,
        entry_count,
    })
}

/// Size of the directory in bytes, and where it ends.
pub(crate) fn directory_end(header: &FffHeader) -> u64 {
    u64::from(header.directory_offset) + u64::from(header.entry_count) * ENTRY_LEN as u64
}

/// Parses the directory entries from `dir` (exactly the directory bytes). Empty entries
/// (type 0) are skipped.
pub(crate) fn parse_directory(
    header: &FffHeader,
    dir: &[u8],
    base: u64,
) -> Result<Vec<RecordEntry>, FlirError> {
    let view = StructView::new(dir, header.order, base, "fff directory");
    let mut entries = Vec::with_capacity(header.entry_count as usize);
    for i in 0..header.entry_count as usize {
        let at = i * ENTRY_LEN;
        let kind = view.u16(at, "record type")?;
        if kind == 0 {
            continue;
        }
        entries.push(RecordEntry {
            kind,
            subtype: view.u16(at + 2, "record subtype")?,
            offset: view.u32(at + 0x0c, "record offset")?,
            length: view.u32(at + 0x10, "record length")?,
        });
    }
    Ok(entries)
}

/// Where one FFF frame ends: the furthest of the directory end and every record end.
pub(crate) fn frame_extent(header: &FffHeader, entries: &[RecordEntry]) -> u64 {
    entries
        .iter()
        .map(RecordEntry::end)
        .chain(std::iter::once(directory_end(header)))
        .max()
        .unwrap_or(HEADER_LEN as u64)
        .max(HEADER_LEN as u64)
}
