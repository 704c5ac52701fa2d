//! Corrupted FLIR files end in a typed [`FlirError`] that names what was wrong and
//! where: never a panic, never an allocation a length field talked the parser into,
//! never a hang.
//!
//! Three families of inputs:
//! - every fixture truncated at many offsets: each of the first 64 bytes, both sides of
//!   every JPEG segment and FFF structure boundary, and 200 evenly spaced offsets over
//!   the bytes the parser reads (JPEG-LS scans included: a stream without its
//!   end-of-image marker is rejected before decoding; `jpegls_robustness.rs` puts
//!   the marker back to hand cut scans to the decoder);
//! - random byte flips and overwrites, biased towards the headers (proptest);
//! - hand-made malformed files whose error variant and message are asserted.
//!
//! Every parse runs under a counting allocator ([`support::peak_heap`]) and must stay
//! below [`PEAK_HEAP_LIMIT`].

mod support;

use chitti_common::flir::{FlirError, FlirFile, ParseLimits, VisualImageKind};
use chitti_common::radiometry::ParamOverrides;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use std::collections::BTreeSet;
use std::io::Cursor;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::OnceLock;
use support::{panic_message, parse_everything, peak_heap, FrameSummary, Outcome};

/// The most heap one parse of a (corrupted) fixture may hold at once. The largest
/// legitimate need is ~20 MiB (the T640: file, FFF stream, 5 MP visual JPEG, frame).
const PEAK_HEAP_LIMIT: usize = 256 << 20;

/// Evenly spaced truncation offsets per fixture.
const EVENLY_SPACED_CUTS: usize = 200;

// ---------------------------------------------------------------------------------
// Fixtures and a test-side map of their structures
// ---------------------------------------------------------------------------------

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/flir")
}

/// Every FLIR file in the fixture folder, by name.
fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture folder")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .filter(|n| {
            [".jpg", ".fff", ".seq", ".csq"]
                .iter()
                .any(|ext| n.ends_with(ext))
        })
        .collect();
    names.sort();
    names
}

/// A fixture with the positions of its structures, found by a small walker written
/// for the tests (independent of the parser's own).
struct Fixture {
    name: String,
    bytes: Vec<u8>,
    /// R-JPEGs: the FLIR `APP1` chunks in file order.
    chunks: Vec<FlirChunk>,
    /// R-JPEGs: where the first start-of-scan marker sits (the parser stops there).
    start_of_scan: Option<usize>,
    /// JPEG segment starts and ends, FFF header/directory/record starts and ends.
    boundaries: BTreeSet<usize>,
    /// File ranges of FFF headers, directories and the first bytes of each record.
    hot: Vec<Range<usize>>,
    /// Per frame: the file range of its RawData record (R-JPEGs: first and last byte
    /// mapped through the chunks).
    raw_records: Vec<Range<usize>>,
    /// File ranges of JPEG-LS raw payloads past their first bytes (`.csq`): the flip
    /// test starts from two frames of such a file to keep each case short.
    jpeg_ls_scans: Vec<Range<usize>>,
}

/// One FLIR `APP1` segment of an R-JPEG.
#[derive(Debug, Clone)]
struct FlirChunk {
    /// File offset of the segment's `0xFF 0xE1`.
    segment: Range<usize>,
    /// File offset of the chunk's FFF bytes (after the 8-byte `FLIR\0` header).
    data_at: usize,
    index: u8,
}

/// The FFF structures of one frame, as offsets in its FFF stream.
struct FffMap {
    big_endian: bool,
    directory: Range<usize>,
    /// (record type, stream range).
    records: Vec<(u16, Range<usize>)>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn read_u16(b: &[u8], at: usize, big: bool) -> u16 {
    let a = [b[at], b[at + 1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn read_u32(b: &[u8], at: usize, big: bool) -> u32 {
    let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn write_u16(b: &mut [u8], at: usize, big: bool, v: u16) {
    let a = if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    };
    b[at..at + 2].copy_from_slice(&a);
}

fn write_u32(b: &mut [u8], at: usize, big: bool, v: u32) {
    let a = if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    };
    b[at..at + 4].copy_from_slice(&a);
}

/// JPEG segments before the first scan: (marker, file range of the whole segment).
/// Skips fill bytes and junk between segments the way a tolerant reader must.
fn jpeg_segments(b: &[u8]) -> (Vec<(u8, Range<usize>)>, Option<usize>) {
    let mut segments = Vec::new();
    let mut pos = 2;
    loop {
        while pos < b.len() && b[pos] != 0xFF {
            pos += 1;
        }
        while pos + 1 < b.len() && b[pos + 1] == 0xFF {
            pos += 1;
        }
        if pos + 3 >= b.len() {
            return (segments, None);
        }
        let marker = b[pos + 1];
        match marker {
            0x00 | 0x01 | 0xD0..=0xD7 => pos += 2,
            0xDA => return (segments, Some(pos)),
            0xD9 => return (segments, None),
            _ => {
                let end = pos + 2 + usize::from(be16(b, pos + 2));
                segments.push((marker, pos..end));
                pos = end;
            }
        }
    }
}

/// Header, directory and records of the FFF stream starting at `s[0]`.
fn fff_map(s: &[u8]) -> FffMap {
    let version_be = read_u32(s, 0x14, true);
    let big = (100..200).contains(&version_be);
    let dir_at = read_u32(s, 0x18, big) as usize;
    let count = read_u32(s, 0x1c, big) as usize;
    let directory = dir_at..dir_at + count * 0x20;
    let records = (0..count)
        .map(|i| dir_at + i * 0x20)
        .filter(|&e| read_u16(s, e, big) != 0)
        .map(|e| {
            let start = read_u32(s, e + 0x0c, big) as usize;
            (
                read_u16(s, e, big),
                start..start + read_u32(s, e + 0x10, big) as usize,
            )
        })
        .collect();
    FffMap {
        big_endian: big,
        directory,
        records,
    }
}

/// File offset of FFF stream offset `at` in an R-JPEG (the end of the stream maps to
/// the end of the last chunk).
fn chunk_file_offset(chunks: &[FlirChunk], at: usize) -> usize {
    let mut start = 0;
    for c in chunks {
        let len = c.segment.end - c.data_at;
        if at < start + len {
            return c.data_at + (at - start);
        }
        start += len;
    }
    chunks.last().map_or(0, |c| c.segment.end)
}

impl Fixture {
    fn load(name: &str) -> Self {
        let bytes = std::fs::read(fixture_dir().join(name)).expect("fixture");
        let mut fixture = Self {
            name: name.to_string(),
            bytes,
            chunks: Vec::new(),
            start_of_scan: None,
            boundaries: BTreeSet::new(),
            hot: Vec::new(),
            raw_records: Vec::new(),
            jpeg_ls_scans: Vec::new(),
        };
        if name.ends_with(".jpg") {
            fixture.map_rjpeg();
        } else {
            fixture.map_sequence();
        }
        fixture
    }

    fn map_rjpeg(&mut self) {
        let b = &self.bytes;
        let (segments, sos) = jpeg_segments(b);
        self.start_of_scan = sos;
        for (marker, range) in segments {
            self.boundaries.extend([range.start, range.end]);
            let payload = &b[range.start + 4..range.end];
            if marker == 0xE1 && payload.starts_with(b"FLIR\0") {
                self.boundaries.insert(range.start + 4 + 8);
                self.chunks.push(FlirChunk {
                    data_at: range.start + 4 + 8,
                    index: payload[6],
                    segment: range,
                });
            }
        }
        assert!(!self.chunks.is_empty(), "{}: no FLIR chunks", self.name);
        let stream: Vec<u8> = self
            .chunks
            .iter()
            .flat_map(|c| &b[c.data_at..c.segment.end])
            .copied()
            .collect();
        let map = fff_map(&stream);
        let chunks = self.chunks.clone();
        self.add_fff_structures(&map, |at| chunk_file_offset(&chunks, at));
    }

    fn map_sequence(&mut self) {
        let mut frame = 0;
        while frame + 0x40 <= self.bytes.len() && self.bytes[frame..].starts_with(b"FFF\0") {
            let map = fff_map(&self.bytes[frame..]);
            self.add_fff_structures(&map, |at| frame + at);
            let end = map
                .records
                .iter()
                .map(|(_, r)| r.end)
                .chain([map.directory.end])
                .max()
                .unwrap_or(0x40);
            frame += end;
        }
    }

    fn add_fff_structures(&mut self, map: &FffMap, to_file: impl Fn(usize) -> usize) {
        let mut points = vec![0, 0x40, map.directory.start, map.directory.end];
        let mut hot = vec![0..0x40, map.directory.clone()];
        for (kind, r) in &map.records {
            points.extend([r.start, r.start + 0x20, r.end]);
            hot.push(r.start..(r.start + 0x40).min(r.end));
            if *kind == 1 {
                let raw = to_file(r.start)..to_file(r.end - 1) + 1;
                if self.bytes[raw.start + 0x20..].starts_with(&[0xFF, 0xD8, 0xFF, 0xF7]) {
                    self.jpeg_ls_scans.push(raw.start + 0x20 + 64..raw.end);
                }
                self.raw_records.push(raw);
            }
        }
        let len = self.bytes.len();
        self.boundaries
            .extend(points.into_iter().map(&to_file).filter(|&p| p <= len));
        // Ranges that straddle a chunk boundary are only counted up to it: close enough
        // for biasing where bytes are flipped.
        self.hot.extend(hot.into_iter().filter_map(|r| {
            let start = to_file(r.start);
            let end = (start + r.len()).min(len);
            (start < end).then_some(start..end)
        }));
    }

    /// The bytes the parser actually reads: an R-JPEG up to its first scan, else all.
    fn parsed_len(&self) -> usize {
        self.start_of_scan.map_or(self.bytes.len(), |s| s + 2)
    }

    /// The offsets at which the fixture is cut, without duplicates, all `< len`.
    fn truncation_offsets(&self) -> Vec<usize> {
        let len = self.bytes.len();
        let parsed = self.parsed_len();
        let mut cuts: BTreeSet<usize> = (0..64).collect();
        for &b in &self.boundaries {
            cuts.extend(b.saturating_sub(2)..=b + 2);
        }
        cuts.extend((1..=EVENLY_SPACED_CUTS).map(|k| k * parsed / (EVENLY_SPACED_CUTS + 1)));
        // Past an R-JPEG's first scan every cut reads the same bytes: three suffice.
        cuts.extend((1..=3).map(|k| parsed + k * (len - parsed) / 4));
        cuts.into_iter().filter(|&c| c < len).collect()
    }
}

fn fixture(name: &str) -> &'static Fixture {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES
        .get_or_init(|| fixture_names().iter().map(|n| Fixture::load(n)).collect())
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// Parses `bytes` under a panic guard and the allocation counter.
fn guarded_parse(bytes: &[u8], decode: impl Fn(usize) -> bool) -> Result<Outcome, String> {
    let (caught, peak) =
        peak_heap::measure(|| catch_unwind(AssertUnwindSafe(|| parse_everything(bytes, decode))));
    let outcome = match caught {
        Err(payload) => return Err(format!("panicked: {}", panic_message(payload.as_ref()))),
        Ok(Err(contract)) => return Err(contract),
        Ok(Ok(outcome)) => outcome,
    };
    if peak > PEAK_HEAP_LIMIT {
        return Err(format!("held {} MiB of heap at once", peak >> 20));
    }
    Ok(outcome)
}

// ---------------------------------------------------------------------------------
// Truncation
// ---------------------------------------------------------------------------------

macro_rules! truncation_tests {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                truncate_everywhere($file);
            }
        )*
        /// The fixtures with a truncation test.
        const TRUNCATED_FIXTURES: &[&str] = &[$($file),*];
    };
}

truncation_tests! {
    truncated_dji_xt2_be_header => "dji_xt2_fw0602_be_header.jpg",
    truncated_dji_xt2_le_header => "dji_xt2_le_header.jpg",
    truncated_dji_zenmuse_xtr => "dji_zenmuse_xtr.jpg",
    truncated_flir_ax8 => "flir_ax8_png_80x60.jpg",
    truncated_flir_b60 => "flir_b60_png_embedded_png.jpg",
    truncated_flir_duo_pro_r_fff => "flir_duo_pro_r_frame.fff",
    truncated_flir_ex320 => "flir_ex320_png_bigendian.jpg",
    truncated_flir_one => "flir_one_png_portrait.jpg",
    truncated_flir_sc660_seq => "flir_sc660_2frames.seq",
    truncated_flir_t1030sc_csq => "flir_t1030sc_8frames_jpegls.csq",
    truncated_flir_t420 => "flir_t420_png_640x480.jpg",
    truncated_flir_t440 => "flir_t440_raw.jpg",
    truncated_flir_t640 => "flir_t640_png.jpg",
}

#[test]
fn every_fixture_has_a_truncation_test() {
    let mut listed: Vec<String> = TRUNCATED_FIXTURES.iter().map(ToString::to_string).collect();
    listed.sort();
    assert_eq!(listed, fixture_names());
}

/// Cuts the fixture at every offset of [`Fixture::truncation_offsets`] and parses what
/// is left. Frames that end before the cut are byte-identical to the intact file's and
/// are not decoded again (the `.csq` would otherwise take minutes in a debug build);
/// `frame_count` still walks them.
fn truncate_everywhere(name: &str) {
    let fx = fixture(name);
    let intact = match guarded_parse(&fx.bytes, |_| true) {
        Ok(Outcome::Frames(frames)) => frames
            .into_iter()
            .map(|f| {
                f.expect("decoded")
                    .unwrap_or_else(|e| panic!("{name} intact: {e}"))
            })
            .collect::<Vec<FrameSummary>>(),
        other => panic!("{name} intact: {other:?}"),
    };
    let frame_end = |i: usize| {
        intact
            .get(i + 1)
            .map_or(fx.bytes.len(), |f| f.offset as usize)
    };
    let last_flir_byte = fx.chunks.iter().map(|c| c.segment.end).max();
    let cuts = fx.truncation_offsets();
    let mut failures = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    // Between an R-JPEG's last FLIR byte and its first scan the FFF stream is complete
    // and unchanged: the frame is decoded at the first such cut only, and again past
    // the scan, where it must equal the intact one.
    let first_complete_cut =
        last_flir_byte.and_then(|last| cuts.iter().copied().find(|&c| c >= last));
    let decode_rjpeg = |cut: usize| {
        last_flir_byte.is_none_or(|last| {
            cut < last || cut >= fx.parsed_len() || Some(cut) == first_complete_cut
        })
    };
    for &cut in &cuts {
        let decode = |i: usize| frame_end(i) > cut && decode_rjpeg(cut);
        let outcome = match guarded_parse(&fx.bytes[..cut], decode) {
            Ok(outcome) => outcome,
            Err(broken) => {
                failures.push(format!("cut at {cut}: {broken}"));
                continue;
            }
        };
        if outcome.first_error().is_some() {
            rejected += 1;
        } else {
            accepted += 1;
        }
        if let Some(problem) = check_truncated(fx, cut, &intact, last_flir_byte, &outcome) {
            failures.push(format!("cut at {cut}: {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name} ({} bytes, {} cuts):\n{}",
        fx.bytes.len(),
        cuts.len(),
        failures.join("\n")
    );
    assert!(rejected > 0, "{name}: no truncation was detected at all");
    assert_eq!(accepted + rejected, cuts.len());
}

/// What a truncated parse must look like; `None` when it does.
fn check_truncated(
    fx: &Fixture,
    cut: usize,
    intact: &[FrameSummary],
    last_flir_byte: Option<usize>,
    outcome: &Outcome,
) -> Option<String> {
    if let Some(last_flir_byte) = last_flir_byte {
        // An R-JPEG is all or nothing: any FLIR byte missing is an error, and once they
        // are all there (and the segments up to the scan) the image is the intact one.
        let err = outcome.first_error();
        if cut < last_flir_byte {
            return err
                .is_none()
                .then(|| format!("accepted with FLIR bytes up to {last_flir_byte} missing"));
        }
        if cut >= fx.parsed_len() {
            return match outcome {
                Outcome::Frames(f)
                    if f.len() == 1
                        && f[0]
                            .as_ref()
                            .is_some_and(|f| f.as_ref().ok() == intact.first()) =>
                {
                    None
                }
                other => Some(format!(
                    "past the first scan the image must be the intact one, got {other:?}"
                )),
            };
        }
        return None;
    }
    let Outcome::Frames(frames) = outcome else {
        return None;
    };
    if frames.len() > intact.len() {
        return Some(format!(
            "{} frames, the intact file has {}",
            frames.len(),
            intact.len()
        ));
    }
    for (i, frame) in frames.iter().enumerate() {
        let Some(Ok(got)) = frame else { continue };
        let want = &intact[i];
        if (got.offset, got.size) != (want.offset, want.size) {
            return Some(format!("frame {i} is {got:?}, intact {want:?}"));
        }
        // A frame the cut runs through decodes only if its counts are all there: for
        // uncompressed and PNG payloads the whole record, for JPEG-LS the stream up to
        // its end-of-image marker (the zero padding after it may be cut). Either way
        // the image must be exactly the intact one.
        if cut < fx.raw_records[i].end {
            let record = &fx.bytes[..fx.raw_records[i].end];
            let data_end = record.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            let padding_only =
                cut >= data_end && data_end >= 2 && record[data_end - 2..data_end] == [0xFF, 0xD9];
            if !padding_only || got.counts_digest != want.counts_digest {
                return Some(format!(
                    "frame {i} decoded although its raw data ends at {}",
                    fx.raw_records[i].end
                ));
            }
        }
        if got.truncated_bytes <= want.truncated_bytes {
            return Some(format!(
                "frame {i} decoded from a cut frame without reporting missing bytes"
            ));
        }
    }
    None
}

// ---------------------------------------------------------------------------------
// Byte flips
// ---------------------------------------------------------------------------------

/// Where a flipped byte lands.
#[derive(Debug, Clone, Copy)]
enum Region {
    /// The first 4 KiB (JPEG/EXIF/FFF headers).
    Head,
    /// An FFF header, directory or the first bytes of a record.
    Structures,
    /// Anywhere in the file.
    Anywhere,
}

/// What happens to the byte.
#[derive(Debug, Clone, Copy)]
enum Edit {
    FlipBit(u8),
    Set(u8),
}

fn region() -> impl Strategy<Value = Region> {
    prop_oneof![2 => Just(Region::Head), 2 => Just(Region::Structures), 1 => Just(Region::Anywhere)]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0u8..8).prop_map(Edit::FlipBit),
        prop::sample::select(vec![0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]).prop_map(Edit::Set),
        any::<u8>().prop_map(Edit::Set),
    ]
}

impl Fixture {
    /// The bytes the flips start from: the whole file, except the `.csq`, of which the
    /// first two frames (a valid two-frame `.csq`) keep a case under half a second.
    fn flip_base(&self) -> &[u8] {
        let frames = if self.jpeg_ls_scans.is_empty() {
            usize::MAX
        } else {
            2
        };
        let end = self
            .raw_records
            .get(frames)
            .map_or(self.bytes.len(), |_| self.raw_records[frames - 1].end);
        &self.bytes[..end]
    }

    /// An offset in `region`, below `len`.
    fn pick(&self, region: Region, range: &Index, pos: &Index, len: usize) -> usize {
        let hot: Vec<&Range<usize>> = self.hot.iter().filter(|r| r.end <= len).collect();
        match region {
            Region::Head => pos.index(len.min(4096)),
            Region::Structures if !hot.is_empty() => {
                let r = range.get(&hot);
                r.start + pos.index(r.len())
            }
            Region::Structures | Region::Anywhere => pos.index(len),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 96 cases keep CI fast; `PROPTEST_CASES=5000` for a long local run.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(96),
        // A failure is saved next to this file so the next run replays it first;
        // commit the file together with the fix.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// 1–16 bytes of a fixture flipped or overwritten, mostly in the headers: the parse
    /// ends in `Ok` or a `FlirError`, within the heap limit.
    #[test]
    fn flipped_bytes_never_break_the_parser(
        which in any::<Index>(),
        edits in prop::collection::vec((region(), any::<Index>(), any::<Index>(), edit()), 1..=16),
    ) {
        let names = fixture_names();
        let fx = fixture(which.get(&names).as_str());
        let mut bytes = fx.flip_base().to_vec();
        let mut applied = Vec::new();
        for (region, range, pos, edit) in &edits {
            let at = fx.pick(*region, range, pos, bytes.len());
            let old = bytes[at];
            bytes[at] = match *edit {
                Edit::FlipBit(bit) => old ^ (1 << bit),
                Edit::Set(v) => v,
            };
            applied.push(format!("{at:#x}: {old:#04x} -> {:#04x}", bytes[at]));
        }
        if let Err(broken) = guarded_parse(&bytes, |_| true) {
            prop_assert!(false, "{} with {}: {broken}", fx.name, applied.join(", "));
        }
    }

    /// Short arbitrary inputs: without a JPEG or FFF magic they are `NotFlir`; with one
    /// they still end in `Ok` or an error.
    #[test]
    fn arbitrary_bytes_are_rejected_cleanly(
        magic in prop::sample::select(vec![&b""[..], b"\xFF\xD8", b"\xFF\xD8\xFF\xE1", b"FFF\0", b"AFF\0"]),
        tail in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let bytes = [magic, &tail[..]].concat();
        let outcome = guarded_parse(&bytes, |_| true);
        prop_assert!(outcome.is_ok(), "{bytes:02x?}: {}", outcome.unwrap_err());
        let has_magic = bytes.starts_with(b"\xFF\xD8") || bytes.starts_with(b"FFF\0") || bytes.starts_with(b"AFF\0");
        if !has_magic {
            let err = into_first_error(outcome.unwrap());
            prop_assert!(matches!(err, Some(FlirError::NotFlir { .. })), "{bytes:02x?}: {err:?}");
        }
    }
}

/// The first error of an outcome, owned.
fn into_first_error(outcome: Outcome) -> Option<FlirError> {
    match outcome {
        Outcome::Rejected(e) => Some(e),
        Outcome::Frames(frames) => frames.into_iter().flatten().find_map(Result::err),
    }
}

// ---------------------------------------------------------------------------------
// Hand-made malformed files
// ---------------------------------------------------------------------------------

/// Parses `bytes` (no panic guard: a panic fails the test anyway) and returns the first
/// error with the peak heap the parse held.
fn first_error(bytes: &[u8]) -> (FlirError, usize) {
    let (outcome, peak) = peak_heap::measure(|| parse_everything(bytes, |_| true));
    let outcome = outcome.unwrap_or_else(|contract| panic!("{contract}"));
    match into_first_error(outcome) {
        Some(err) => (err, peak),
        None => panic!("the malformed input parsed without an error"),
    }
}

/// A fixture's bytes, to edit.
fn edited(name: &str) -> Vec<u8> {
    fixture(name).bytes.clone()
}

const FFF_FILE: &str = "flir_duo_pro_r_frame.fff";
const SEQ_FILE: &str = "flir_sc660_2frames.seq";
const CHUNKED_JPEG: &str = "flir_t640_png.jpg";
const ONE_CHUNK_JPEG: &str = "flir_ax8_png_80x60.jpg";

/// The directory entry (file offset) of the first record of `kind`.
fn entry_of(bytes: &[u8], frame_at: usize, kind: u16) -> usize {
    let map = fff_map(&bytes[frame_at..]);
    (0..)
        .map(|i| frame_at + map.directory.start + i * 0x20)
        .take_while(|&e| e < frame_at + map.directory.end)
        .find(|&e| read_u16(bytes, e, map.big_endian) == kind)
        .expect("record in the directory")
}

/// File range of the first record of `kind` in the frame at `frame_at`, and whether
/// the record (by its check word) is big-endian.
fn record_of(bytes: &[u8], frame_at: usize, kind: u16) -> (Range<usize>, bool) {
    let map = fff_map(&bytes[frame_at..]);
    let (_, r) = map
        .records
        .iter()
        .find(|(k, _)| *k == kind)
        .expect("record");
    let r = frame_at + r.start..frame_at + r.end;
    let big = u16::from_le_bytes([bytes[r.start], bytes[r.start + 1]]) >= 0x100;
    (r, big)
}

#[test]
fn an_empty_file_is_not_flir() {
    let (err, _) = first_error(&[]);
    assert!(
        matches!(&err, FlirError::NotFlir { reason } if reason.contains("empty")),
        "{err:?}"
    );
}

#[test]
fn a_png_file_is_not_flir() {
    // The b60 stores its visual image as a real PNG file.
    let frame = chitti_common::flir::parse_bytes(&fixture("flir_b60_png_embedded_png.jpg").bytes)
        .expect("b60");
    let png = frame.visual.expect("visual image");
    assert_eq!(png.kind, VisualImageKind::Png);
    let (err, _) = first_error(&png.bytes);
    assert!(matches!(err, FlirError::NotFlir { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "not a FLIR radiometric file: file starts with [89, 50, 4e, 47], neither a JPEG nor an FFF header"
    );
}

#[test]
fn a_jpeg_without_flir_segments_is_not_flir() {
    let (err, _) = first_error(&[0xFF, 0xD8, 0xFF, 0xD9]);
    assert!(
        matches!(&err, FlirError::NotFlir { reason } if reason.contains("no FLIR APP1")),
        "{err:?}"
    );
    // A real camera JPEG: the T640's visual image, with its own EXIF segment.
    let frame = chitti_common::flir::parse_bytes(&fixture(CHUNKED_JPEG).bytes).expect("t640");
    let visual = frame.visual.expect("visual image");
    assert_eq!(visual.kind, VisualImageKind::Jpeg);
    let (err, _) = first_error(&visual.bytes);
    assert!(
        matches!(&err, FlirError::NotFlir { reason } if reason.contains("no FLIR APP1")),
        "{err:?}"
    );
}

#[test]
fn a_duplicated_chunk_is_named_with_its_offset() {
    let fx = fixture(CHUNKED_JPEG);
    assert_eq!(fx.chunks.len(), 23);
    let chunk = &fx.chunks[5];
    let copy = &fx.bytes[chunk.segment.clone()];
    let bytes = [
        &fx.bytes[..chunk.segment.end],
        copy,
        &fx.bytes[chunk.segment.end..],
    ]
    .concat();
    let (err, _) = first_error(&bytes);
    assert!(matches!(err, FlirError::Chunks { .. }), "{err:?}");
    let copy_at = chunk.segment.end;
    assert_eq!(
        err.to_string(),
        format!("FLIR APP1 chunks: duplicate chunk 5 at file offset {copy_at:#x}")
    );
}

#[test]
fn a_missing_chunk_is_named() {
    let fx = fixture(CHUNKED_JPEG);
    let chunk = &fx.chunks[7];
    assert_eq!(chunk.index, 7);
    let bytes = [
        &fx.bytes[..chunk.segment.start],
        &fx.bytes[chunk.segment.end..],
    ]
    .concat();
    let (err, _) = first_error(&bytes);
    assert!(matches!(err, FlirError::Chunks { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "FLIR APP1 chunks: missing chunk(s) 7 of 23"
    );
}

#[test]
fn a_chunk_disagreeing_on_the_count_is_named() {
    let fx = fixture(CHUNKED_JPEG);
    let mut bytes = fx.bytes.clone();
    let chunk = &fx.chunks[3];
    bytes[chunk.segment.start + 4 + 7] = 30; // "last index" of chunk 3
    let (err, _) = first_error(&bytes);
    assert!(matches!(err, FlirError::Chunks { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "FLIR APP1 chunks: chunk 3 at file offset {:#x} declares 31 chunks, earlier chunks declared 23",
            chunk.segment.start
        )
    );
}

#[test]
fn a_chunk_beyond_the_declared_count_is_named() {
    let fx = fixture(CHUNKED_JPEG);
    let last = fx.chunks.last().expect("chunks");
    let mut extra = fx.bytes[last.segment.clone()].to_vec();
    extra[4 + 6] = 30; // chunk index
    let bytes = [
        &fx.bytes[..last.segment.end],
        &extra[..],
        &fx.bytes[last.segment.end..],
    ]
    .concat();
    let (err, _) = first_error(&bytes);
    assert!(matches!(err, FlirError::Chunks { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "FLIR APP1 chunks: chunk 30 is beyond the declared count of 23"
    );
}

#[test]
fn a_segment_running_past_the_end_of_the_file_is_a_jpeg_error_at_its_offset() {
    let fx = fixture(CHUNKED_JPEG);
    let chunk = &fx.chunks[0];
    let (err, _) = first_error(&fx.bytes[..chunk.segment.start + 1000]);
    assert!(
        matches!(&err, FlirError::Jpeg { offset, reason }
            if *offset == chunk.segment.start as u64 && reason.contains("segment 0xFFE1 declares")),
        "{err:?}"
    );
}

#[test]
fn a_jpeg_over_the_size_limit_is_refused_before_reading_it() {
    let bytes = &fixture(CHUNKED_JPEG).bytes;
    let limits = ParseLimits {
        max_jpeg_bytes: 1 << 20,
        ..ParseLimits::default()
    };
    let (result, peak) =
        peak_heap::measure(|| FlirFile::open(Cursor::new(&bytes[..]), limits).map(|_| ()));
    let err = result.expect_err("over the limit");
    assert!(
        matches!(err, FlirError::TooLarge { what: "JPEG file", size, limit: 1_048_576 } if size == bytes.len() as u64),
        "{err:?}"
    );
    assert!(peak < 64 << 10, "{peak} bytes allocated to refuse it");
}

#[test]
fn an_absurd_directory_entry_count_names_the_limit() {
    // In a `.fff` (big-endian header) ...
    let mut bytes = edited(FFF_FILE);
    write_u32(&mut bytes, 0x1c, true, u32::MAX);
    let (err, peak) = first_error(&bytes);
    assert!(
        matches!(err, FlirError::FffHeader { offset: 0x1c, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "FFF header at fff offset 0x1c: 4294967295 directory entries (at most 4096 accepted)"
    );
    assert!(peak < 1 << 20, "{peak} bytes");
    // ... and inside an R-JPEG's FFF stream.
    let fx = fixture(ONE_CHUNK_JPEG);
    let at = fx.chunks[0].data_at;
    let mut bytes = fx.bytes.clone();
    let big = fff_map(&bytes[at..]).big_endian;
    write_u32(&mut bytes, at + 0x1c, big, 5000);
    let (err, _) = first_error(&bytes);
    assert!(
        matches!(&err, FlirError::FffHeader { offset: 0x1c, reason } if reason.contains("at most 4096")),
        "{err:?}"
    );
}

#[test]
fn a_directory_past_the_end_of_the_file_is_truncated_at_its_offset() {
    let mut bytes = edited(FFF_FILE);
    let len = bytes.len();
    let entries = u64::from(read_u32(&bytes, 0x1c, true));
    write_u32(&mut bytes, 0x18, true, (len - 16) as u32);
    let (err, _) = first_error(&bytes);
    assert!(
        matches!(err, FlirError::Truncated { what: "fff directory", offset, needed, available: 16, .. }
            if offset == (len - 16) as u64 && needed == entries * 0x20),
        "{err:?}"
    );
}

#[test]
fn a_record_past_the_end_of_the_data_is_named_with_its_offset() {
    // `.fff`: the RawData record starts 256 bytes after the end of the file.
    let mut bytes = edited(FFF_FILE);
    let len = bytes.len();
    let entry = entry_of(&bytes, 0, 0x01);
    write_u32(&mut bytes, entry + 0x0c, true, len as u32 + 0x100);
    let (err, _) = first_error(&bytes);
    assert!(
        matches!(&err, FlirError::Record { record: "raw data record", offset, reason }
            if *offset == len as u64 + 0x100 && reason.contains("outside the frame")),
        "{err:?}"
    );
    // R-JPEG: the offset is in the reassembled FFF stream.
    let fx = fixture(ONE_CHUNK_JPEG);
    let at = fx.chunks[0].data_at;
    let mut bytes = fx.bytes.clone();
    let big = fff_map(&bytes[at..]).big_endian;
    let entry = entry_of(&bytes, at, 0x01);
    write_u32(&mut bytes, entry + 0x0c, big, 0x0100_0000);
    let (err, _) = first_error(&bytes);
    assert!(
        matches!(&err, FlirError::Record { record: "raw data record", offset: 0x0100_0000, reason }
            if reason.contains("outside the frame")),
        "{err:?}"
    );
}

#[test]
fn a_record_far_past_the_end_is_refused_by_the_frame_limit_without_allocating_it() {
    let mut bytes = edited(FFF_FILE);
    let entry = entry_of(&bytes, 0, 0x01);
    write_u32(&mut bytes, entry + 0x0c, true, 0x7000_0000);
    let (err, peak) = first_error(&bytes);
    assert!(
        matches!(err, FlirError::TooLarge { what: "FFF frame", size, limit } if size > 0x7000_0000 && limit == 64 << 20),
        "{err:?}"
    );
    assert!(peak < 1 << 20, "{peak} bytes");
}

#[test]
fn a_raw_record_claiming_65535_by_65535_is_refused_before_allocating() {
    for (name, frame_at) in [
        (FFF_FILE, 0),
        (ONE_CHUNK_JPEG, fixture(ONE_CHUNK_JPEG).chunks[0].data_at),
    ] {
        let mut bytes = edited(name);
        let (raw, big) = record_of(&bytes, frame_at, 0x01);
        write_u16(&mut bytes, raw.start + 2, big, u16::MAX);
        write_u16(&mut bytes, raw.start + 4, big, u16::MAX);
        let (err, peak) = first_error(&bytes);
        let raw_in_stream = (raw.start - frame_at) as u64;
        assert!(
            matches!(&err, FlirError::Record { record: "raw data record", offset, reason }
                if *offset == raw_in_stream + 2 && reason.contains("65535x65535 is out of range")),
            "{name}: {err:?}"
        );
        // The file (read whole) and its FFF stream, nothing sized by the claim.
        assert!(peak < 2 * bytes.len() + (1 << 20), "{name}: {peak} bytes");
    }
}

/// CRC-32 (IEEE) for re-signing an edited PNG chunk.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        (0..8).fold(crc ^ u32::from(b), |c, _| {
            if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            }
        })
    })
}

/// The AX8 R-JPEG, its record and PNG header edited to agree on 8192 x 8192 while the
/// PNG data is 80 x 60's worth.
fn claiming_8192_squared() -> Vec<u8> {
    let fx = fixture(ONE_CHUNK_JPEG);
    let mut bytes = fx.bytes.clone();
    let (raw, big) = record_of(&bytes, fx.chunks[0].data_at, 0x01);
    write_u16(&mut bytes, raw.start + 2, big, 8192);
    write_u16(&mut bytes, raw.start + 4, big, 8192);
    let ihdr = raw.start + 0x20 + 8; // length, "IHDR", width, height, ...
    assert_eq!(&bytes[ihdr + 4..ihdr + 8], b"IHDR");
    write_u32(&mut bytes, ihdr + 8, true, 8192);
    write_u32(&mut bytes, ihdr + 12, true, 8192);
    let crc = crc32(&bytes[ihdr + 4..ihdr + 8 + 13]);
    write_u32(&mut bytes, ihdr + 8 + 13, true, crc);
    bytes
}

#[test]
fn a_frame_declaring_more_pixels_than_the_limit_is_refused_before_decoding() {
    // A small file claiming 8192 x 8192 (67 Mpx): refused from the record header, so
    // nothing near the claim is allocated (before the limit: up to 128 MiB of counts
    // and ~670 MB for an analysis).
    let bytes = claiming_8192_squared();
    let (err, peak) = first_error(&bytes);
    assert!(
        matches!(&err, FlirError::TooManyPixels { width: 8192, height: 8192, limit, .. }
            if *limit == chitti_common::flir::DEFAULT_MAX_FRAME_PIXELS),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "frame 0: 8192×8192 pixels exceeds the limit of 4194304 pixels"
    );
    assert!(peak < 2 * bytes.len() + (1 << 20), "{peak} bytes");
}

#[test]
fn a_forged_png_raw_size_costs_at_most_the_largest_legal_frame() {
    // With the pixel limit raised to the largest side accepted, the decode fails, and
    // what it may allocate is bounded by the largest legal frame (8192² x 2 bytes =
    // 128 MiB), not by anything larger a length field could claim.
    let bytes = claiming_8192_squared();
    let limits = ParseLimits {
        max_frame_pixels: 8192 * 8192,
        ..ParseLimits::default()
    };
    let (result, peak) = peak_heap::measure(|| {
        let mut file = FlirFile::open(Cursor::new(&bytes[..]), limits).expect("open");
        file.frame(0).map(|_| ())
    });
    let err = result.expect_err("an undecodable PNG");
    assert!(
        matches!(&err, FlirError::Record { record: "raw data record", reason, .. } if reason.starts_with("png")),
        "{err:?}"
    );
    assert!(peak <= 8192 * 8192 * 2 + (16 << 20), "{} MiB", peak >> 20);
}

#[test]
fn a_sequence_is_refused_once_its_frames_exceed_the_file_pixel_budget() {
    // The SC660 sequence: two 640 x 480 frames. A budget of one and a half frames lets
    // the first through and refuses the second before decoding it.
    let bytes = edited(SEQ_FILE);
    let limits = ParseLimits {
        max_file_pixels: 640 * 480 * 3 / 2,
        ..ParseLimits::default()
    };
    let mut file = FlirFile::open(Cursor::new(&bytes[..]), limits).expect("open");
    let first = file.frame(0).expect("the first frame is within the budget");
    assert_eq!((first.raw.width(), first.raw.height()), (640, 480));
    let err = file.frame(1).expect_err("the second is not");
    assert_eq!(
        err.to_string(),
        "frame 1 would take the file past its pixel budget: 640×480 pixels exceeds the limit of 153600 pixels"
    );
}

#[test]
fn a_huge_frame_length_in_a_sequence_is_refused_without_allocating_it() {
    let mut bytes = edited(SEQ_FILE);
    let len = bytes.len() as u64;
    let big = fff_map(&bytes).big_endian;
    let entry = entry_of(&bytes, 0, 0x01);
    let raw_at = u64::from(read_u32(&bytes, entry + 0x0c, big));
    write_u32(&mut bytes, entry + 0x10, big, 0xFFFF_0000);
    let ((count, frame), peak) = peak_heap::measure(|| {
        let mut file =
            FlirFile::open(Cursor::new(&bytes[..]), ParseLimits::default()).expect("open");
        (
            file.frame_count().map_err(|e| e.to_string()),
            file.frame(0).map(|f| f.index),
        )
    });
    // The walk jumps past the end of the file: the second frame is no longer found.
    assert_eq!(count, Ok(1));
    let err = frame.expect_err("frame 0");
    assert!(
        matches!(err, FlirError::TooLarge { what: "FFF frame", size, limit } if size == raw_at + 0xFFFF_0000 && limit == 64 << 20),
        "{err:?}"
    );
    assert!(peak < 1 << 20, "{peak} bytes");

    // A length under the limit but past the end: the frame still decodes (its counts
    // are all there) and says how many declared bytes are missing.
    write_u32(&mut bytes, entry + 0x10, big, 32 << 20);
    let mut file = FlirFile::open(Cursor::new(&bytes[..]), ParseLimits::default()).expect("open");
    assert_eq!(file.frame_count().expect("count"), 1);
    let frame = file.frame(0).expect("frame 0");
    assert_eq!(frame.truncated_bytes, raw_at + (32 << 20) - len);
}

#[test]
fn a_bad_fff_version_or_directory_offset_is_a_header_error() {
    let mut bytes = edited(FFF_FILE);
    write_u32(&mut bytes, 0x14, true, 7);
    let (err, _) = first_error(&bytes);
    assert!(
        matches!(&err, FlirError::FffHeader { offset: 0x14, reason } if reason.contains("format version")),
        "{err:?}"
    );
    let mut bytes = edited(FFF_FILE);
    write_u32(&mut bytes, 0x18, true, 0x10);
    let (err, _) = first_error(&bytes);
    assert!(
        matches!(&err, FlirError::FffHeader { offset: 0x18, reason } if reason.contains("inside the header")),
        "{err:?}"
    );
}

#[test]
fn a_broken_header_of_a_later_frame_is_named_at_its_file_offset() {
    let fx = fixture(SEQ_FILE);
    let second = fx.raw_records[0].end; // frame 1 starts where frame 0's raw data ends
    let mut bytes = fx.bytes.clone();
    assert!(bytes[second..].starts_with(b"FFF\0"));
    bytes[second + 0x14..second + 0x18].fill(0xEE);
    let (err, _) = first_error(&bytes);
    assert!(
        matches!(err, FlirError::FffHeader { offset, .. } if offset == second as u64 + 0x14),
        "{err:?}"
    );
    // The first frame stays readable on its own.
    let mut file = FlirFile::open(Cursor::new(&bytes[..]), ParseLimits::default()).expect("open");
    assert_eq!(file.frame(0).expect("frame 0").raw.width(), 640);
}

#[test]
fn a_frame_without_raw_data_is_a_record_error() {
    let mut bytes = edited(FFF_FILE);
    let entry = entry_of(&bytes, 0, 0x01);
    write_u16(&mut bytes, entry, true, 0x7F);
    let (err, _) = first_error(&bytes);
    assert!(
        matches!(&err, FlirError::Record { record: "raw data record", offset: 0, reason } if reason.contains("no RawData record")),
        "{err:?}"
    );
}

#[test]
fn nonsense_planck_constants_are_named_by_the_conversion() {
    let mut bytes = edited(FFF_FILE);
    let (camera, big) = record_of(&bytes, 0, 0x20);
    write_u32(&mut bytes, camera.start + 0x5c, big, f32::NAN.to_bits()); // PlanckB
    let mut file = FlirFile::open(Cursor::new(&bytes[..]), ParseLimits::default()).expect("open");
    let frame = file.frame(0).expect("the record itself is well-formed");
    let err = frame
        .temperatures(&ParamOverrides::default())
        .expect_err("NaN PlanckB");
    assert!(
        matches!(&err, FlirError::InvalidParams(p) if p.iter().any(|p| p.name == "planck_b")),
        "{err:?}"
    );
    assert!(err.to_string().contains("planck_b"), "{err}");
}
