//! Pixel geometry shared by hotspots, regions of interest and overlays.
//!
//! Convention everywhere in Chitti: `x` is the column and `y` is the row, both
//! zero-based from the top-left corner of the radiometric (raw) image.

use serde::{Deserialize, Serialize};

/// One pixel position: `x` = column, `y` = row. Serialised as `[x, y]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "[u32; 2]", into = "[u32; 2]")]
pub struct PixelPoint {
    /// Column, zero-based.
    pub x: u32,
    /// Row, zero-based.
    pub y: u32,
}

/// An axis-aligned rectangle of pixels: top-left corner plus width and height.
///
/// Serialised as `[x, y, w, h]`, the form used in the wire protocol and `inspect --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "[u32; 4]", into = "[u32; 4]")]
pub struct PixelRect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels (≥ 1 for a real region).
    pub w: u32,
    /// Height in pixels (≥ 1 for a real region).
    pub h: u32,
}

impl PixelRect {
    /// True when the pixel lies inside the rectangle.
    pub fn contains(&self, p: PixelPoint) -> bool {
        p.x >= self.x
            && p.y >= self.y
            && u64::from(p.x) < u64::from(self.x) + u64::from(self.w)
            && u64::from(p.y) < u64::from(self.y) + u64::from(self.h)
    }
}

impl From<[u32; 2]> for PixelPoint {
    fn from([x, y]: [u32; 2]) -> Self {
        Self { x, y }
    }
}

impl From<PixelPoint> for [u32; 2] {
    fn from(p: PixelPoint) -> Self {
        [p.x, p.y]
    }
}

impl From<[u32; 4]> for PixelRect {
    fn from([x, y, w, h]: [u32; 4]) -> Self {
        Self { x, y, w, h }
    }
}

impl From<PixelRect> for [u32; 4] {
    fn from(r: PixelRect) -> Self {
        [r.x, r.y, r.w, r.h]
    }
}
