//! Shared by the black-box robustness tests: parse a file the way a caller does, and
//! measure how much heap that took.

pub mod peak_heap;

use chitti_common::flir::{FlirError, FlirFile, ParseLimits};
use chitti_common::radiometry::ParamOverrides;
use std::io::Cursor;

/// What one frame came to once decoded and converted to °C.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSummary {
    /// Where the frame starts in the file.
    pub offset: u64,
    /// Raw frame width and height.
    pub size: (u32, u32),
    /// Bytes the directory declares past the end of the data.
    pub truncated_bytes: u64,
    /// FNV-1a of the raw counts, to compare with the intact file.
    pub counts_digest: u64,
}

/// What parsing a whole file came to.
#[derive(Debug)]
pub enum Outcome {
    /// `FlirFile::open` or `frame_count` failed.
    Rejected(FlirError),
    /// One entry per frame: `None` when the caller skipped it, else what `frame(i)`
    /// followed by `temperatures()` gave.
    Frames(Vec<Option<Result<FrameSummary, FlirError>>>),
}

impl Outcome {
    /// The first error, if anything failed.
    pub fn first_error(&self) -> Option<&FlirError> {
        match self {
            Self::Rejected(e) => Some(e),
            Self::Frames(frames) => frames.iter().flatten().find_map(|f| f.as_ref().err()),
        }
    }
}

/// Opens `bytes`, counts the frames, asks for one frame past the end (which must be
/// `NoSuchFrame`), then reads every frame `decode` selects and converts it to °C.
///
/// Returns `Err` with a description when the parser broke its own API contract
/// (asking past the last frame gave something other than `NoSuchFrame`).
pub fn parse_everything(bytes: &[u8], decode: impl Fn(usize) -> bool) -> Result<Outcome, String> {
    let mut file = match FlirFile::open(Cursor::new(bytes), ParseLimits::default()) {
        Ok(file) => file,
        Err(e) => return Ok(Outcome::Rejected(e)),
    };
    let count = match file.frame_count() {
        Ok(count) => count,
        Err(e) => return Ok(Outcome::Rejected(e)),
    };
    match file.frame(count) {
        Err(FlirError::NoSuchFrame { index, count: c }) if index == count && c == count => {}
        other => {
            return Err(format!(
                "frame({count}) of a {count}-frame file gave {:?}, expected NoSuchFrame",
                other.map(|f| f.index)
            ))
        }
    }
    let frames = (0..count)
        .map(|i| decode(i).then(|| summarise(&mut file, i)))
        .collect();
    Ok(Outcome::Frames(frames))
}

fn summarise(file: &mut FlirFile<Cursor<&[u8]>>, index: usize) -> Result<FrameSummary, FlirError> {
    let frame = file.frame(index)?;
    let (celsius, _report) = frame.temperatures(&ParamOverrides::default())?;
    assert_eq!(
        (celsius.width(), celsius.height()),
        (frame.raw.width(), frame.raw.height()),
        "the temperature image has the raw frame's size"
    );
    Ok(FrameSummary {
        offset: frame.offset,
        size: (frame.raw.width(), frame.raw.height()),
        truncated_bytes: frame.truncated_bytes,
        counts_digest: fnv1a(frame.raw.counts()),
    })
}

fn fnv1a(counts: &[u16]) -> u64 {
    counts.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The text of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".into())
}
