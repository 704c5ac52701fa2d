//! Hotspot segmentation: threshold in the raw domain, 8-connected regions, per-region
//! statistics, minimum-area filter, optional regions of interest.
//!
//! The threshold is converted once from °C to the smallest raw count at or above it
//! ([`RawToCelsius::min_raw_at_or_above`]); since raw → °C is monotonic for a frame,
//! `raw >= threshold_raw` selects exactly the pixels at or above the threshold without
//! converting a single pixel. Regions are labelled run by run (a union–find over the
//! horizontal runs of each row), which costs one pass over the frame plus work
//! proportional to the number of runs — small for the sparse masks hotspots make.
//! Statistics go through the frame's [`CelsiusLut`], so a hotspot's °C are identical to
//! the [`crate::image::TemperatureImage`] of the same frame.

use crate::geometry::{PixelPoint, PixelRect};
use crate::image::RawFrame;
use crate::radiometry::{CelsiusLut, RawToCelsius};
use serde::{Deserialize, Serialize};

/// A connected region of pixels at or above the threshold (or at or below it, for a
/// cold search).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hotspot {
    /// Bounding box, `[x, y, w, h]`.
    pub bbox: PixelRect,
    /// Number of pixels in the region.
    pub area_px: u32,
    /// Hottest pixel, °C.
    pub max_c: f64,
    /// Where the hottest pixel is (first in row-major order on ties).
    pub max_at: PixelPoint,
    /// Mean over the region's pixels, °C.
    pub mean_c: f64,
    /// Coldest pixel of the region, °C.
    pub min_c: f64,
    /// Coldest pixel's position (first in row-major order on ties).
    pub min_at: PixelPoint,
}

/// Which side of the threshold a region is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdSide {
    /// Pixels at or above the threshold (hotspots).
    #[default]
    AtOrAbove,
    /// Pixels at or below the threshold (cold regions: open circuits, lost load).
    AtOrBelow,
}

/// The shape of a region of interest, in raw image pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RoiShape {
    /// An axis-aligned rectangle `[x, y, w, h]`.
    Rect(PixelRect),
    /// A closed polygon of `[x, y]` vertices (pixel units; a pixel belongs to it when
    /// its centre does, even–odd rule).
    Polygon(Vec<[f64; 2]>),
}

/// A named region of interest: only pixels inside some region are analysed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionOfInterest {
    /// Optional name (e.g. "bay 3 breaker phase A").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The shape.
    #[serde(flatten)]
    pub shape: RoiShape,
}

/// A region of interest is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoiError {
    /// A polygon needs three vertices.
    #[error("roi {index}: a polygon needs at least 3 vertices, got {count}")]
    TooFewVertices {
        /// Position in the list.
        index: usize,
        /// Vertices given.
        count: usize,
    },
    /// A coordinate is NaN or infinite.
    #[error("roi {index}: vertex {vertex} is not a finite coordinate")]
    NonFinite {
        /// Position in the list.
        index: usize,
        /// Vertex number.
        vertex: usize,
    },
    /// A rectangle is empty or lies outside the frame.
    #[error("roi {index}: rectangle {rect:?} does not overlap the {width}x{height} frame")]
    OutsideFrame {
        /// Position in the list.
        index: usize,
        /// The rectangle `[x, y, w, h]`.
        rect: [u32; 4],
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
}

/// The union of several regions of interest rasterised for one frame size; build it
/// once per camera (or preset) and reuse it for every frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoiMask {
    width: u32,
    height: u32,
    inside: Vec<bool>,
}

impl RoiMask {
    /// Rasterises the union of `regions` for a `width × height` frame.
    pub fn build(
        width: u32,
        height: u32,
        regions: &[RegionOfInterest],
    ) -> Result<Self, Vec<RoiError>> {
        let (w, h) = (width as usize, height as usize);
        let mut inside = vec![false; w * h];
        let mut errors = Vec::new();
        for (index, region) in regions.iter().enumerate() {
            match &region.shape {
                RoiShape::Rect(r) => {
                    let x_end = (u64::from(r.x) + u64::from(r.w)).min(u64::from(width)) as usize;
                    let y_end = (u64::from(r.y) + u64::from(r.h)).min(u64::from(height)) as usize;
                    if r.x as usize >= x_end || r.y as usize >= y_end {
                        errors.push(RoiError::OutsideFrame {
                            index,
                            rect: (*r).into(),
                            width,
                            height,
                        });
                        continue;
                    }
                    for y in r.y as usize..y_end {
                        inside[y * w + r.x as usize..y * w + x_end].fill(true);
                    }
                }
                RoiShape::Polygon(points) => {
                    if points.len() < 3 {
                        errors.push(RoiError::TooFewVertices {
                            index,
                            count: points.len(),
                        });
                        continue;
                    }
                    if let Some(vertex) = points
                        .iter()
                        .position(|p| !(p[0].is_finite() && p[1].is_finite()))
                    {
                        errors.push(RoiError::NonFinite { index, vertex });
                        continue;
                    }
                    fill_polygon(points, w, h, &mut inside);
                }
            }
        }
        if errors.is_empty() {
            Ok(Self {
                width,
                height,
                inside,
            })
        } else {
            Err(errors)
        }
    }

    /// True when the pixel is inside some region.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x < self.width
            && y < self.height
            && self.inside[y as usize * self.width as usize + x as usize]
    }

    /// Frame size the mask was built for.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

/// Scanline fill of a polygon, pixel centres, even–odd rule.
fn fill_polygon(points: &[[f64; 2]], w: usize, h: usize, inside: &mut [bool]) {
    let mut crossings = Vec::new();
    for y in 0..h {
        let cy = y as f64 + 0.5;
        crossings.clear();
        for i in 0..points.len() {
            let [x0, y0] = points[i];
            let [x1, y1] = points[(i + 1) % points.len()];
            // Half-open rule so a vertex on the scanline is counted once.
            if (y0 <= cy && cy < y1) || (y1 <= cy && cy < y0) {
                crossings.push(x0 + (cy - y0) / (y1 - y0) * (x1 - x0));
            }
        }
        crossings.sort_by(f64::total_cmp);
        for pair in crossings.chunks_exact(2) {
            // Pixel x is inside when its centre x + 0.5 lies in [a, b).
            let first = (pair[0] - 0.5).ceil().max(0.0);
            let last = ((pair[1] - 0.5).ceil() - 1.0).min(w as f64 - 1.0);
            if first <= last {
                let (first, last) = (first as usize, last as usize);
                inside[y * w + first..=y * w + last].fill(true);
            }
        }
    }
}

/// How to segment a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentOptions {
    /// Threshold in °C.
    pub threshold_c: f64,
    /// Which side of the threshold to keep.
    pub side: ThresholdSide,
    /// Regions smaller than this many pixels are dropped (noise, single dead pixels).
    pub min_area_px: u32,
    /// At most this many regions are returned, the most extreme first; the rest are
    /// counted in [`Segmentation::dropped_regions`].
    pub max_regions: usize,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self {
            threshold_c: 34.0,
            side: ThresholdSide::AtOrAbove,
            min_area_px: 4,
            max_regions: 100,
        }
    }
}

/// The regions found in one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Segmentation {
    /// Regions, hottest first (coldest first for [`ThresholdSide::AtOrBelow`]).
    pub regions: Vec<Hotspot>,
    /// The threshold as a raw count (`None`: no count can reach it).
    pub threshold_raw: Option<u16>,
    /// Regions dropped for being smaller than `min_area_px`.
    pub below_min_area: u32,
    /// Regions dropped because more than `max_regions` qualified.
    pub dropped_regions: u32,
}

/// A segmenter for one parameter set: the °C threshold is turned into a raw count once.
#[derive(Debug, Clone, Copy)]
pub struct Segmenter {
    options: SegmentOptions,
    threshold_raw: Option<u16>,
}

impl Segmenter {
    /// Prepares a segmenter for frames converted by `converter`.
    pub fn new(converter: &RawToCelsius, options: SegmentOptions) -> Self {
        let threshold_raw = match options.side {
            ThresholdSide::AtOrAbove => converter.min_raw_at_or_above(options.threshold_c),
            ThresholdSide::AtOrBelow => converter.max_raw_at_or_below(options.threshold_c),
        };
        Self {
            options,
            threshold_raw,
        }
    }

    /// The threshold as a raw count.
    pub fn threshold_raw(&self) -> Option<u16> {
        self.threshold_raw
    }

    /// Segments one frame. `lut` must cover the frame's raw values (see
    /// [`CelsiusLut::for_range`]); `roi`, when given, must match the frame's size
    /// (a mismatched mask is ignored rather than misapplied).
    pub fn segment(
        &self,
        frame: &RawFrame,
        lut: &CelsiusLut,
        roi: Option<&RoiMask>,
    ) -> Segmentation {
        let Some(threshold) = self.threshold_raw else {
            return Segmentation::default();
        };
        let roi = roi.filter(|m| m.size() == (frame.width(), frame.height()));
        let runs = match self.options.side {
            ThresholdSide::AtOrAbove => find_runs(frame, roi, |r| r >= threshold),
            ThresholdSide::AtOrBelow => find_runs(frame, roi, |r| r <= threshold),
        };
        let mut out = label_and_measure(frame, lut, &runs);
        out.threshold_raw = Some(threshold);
        let before = out.regions.len();
        out.regions
            .retain(|r| r.area_px >= self.options.min_area_px);
        out.below_min_area = (before - out.regions.len()) as u32;
        match self.options.side {
            ThresholdSide::AtOrAbove => out.regions.sort_by(|a, b| b.max_c.total_cmp(&a.max_c)),
            ThresholdSide::AtOrBelow => out.regions.sort_by(|a, b| a.min_c.total_cmp(&b.min_c)),
        }
        if out.regions.len() > self.options.max_regions {
            out.dropped_regions = (out.regions.len() - self.options.max_regions) as u32;
            out.regions.truncate(self.options.max_regions);
        }
        out
    }
}

/// A horizontal run of selected pixels in one row: `x_start..x_end`.
#[derive(Debug, Clone, Copy)]
struct Run {
    y: u32,
    x_start: u32,
    x_end: u32,
}

fn find_runs(frame: &RawFrame, roi: Option<&RoiMask>, selected: impl Fn(u16) -> bool) -> Vec<Run> {
    let w = frame.width() as usize;
    let mut runs = Vec::new();
    for (y, row) in frame.counts().chunks_exact(w).enumerate() {
        let mask_row = roi.map(|m| &m.inside[y * w..(y + 1) * w]);
        let mut x = 0;
        while x < w {
            // Skip unselected pixels quickly, then measure the run.
            if !(selected(row[x]) && mask_row.is_none_or(|m| m[x])) {
                x += 1;
                continue;
            }
            let start = x;
            while x < w && selected(row[x]) && mask_row.is_none_or(|m| m[x]) {
                x += 1;
            }
            runs.push(Run {
                y: y as u32,
                x_start: start as u32,
                x_end: x as u32,
            });
        }
    }
    runs
}

fn find_root(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let grandparent = parent[parent[i as usize] as usize];
        parent[i as usize] = grandparent; // path halving
        i = grandparent;
    }
    i
}

fn label_and_measure(frame: &RawFrame, lut: &CelsiusLut, runs: &[Run]) -> Segmentation {
    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
    // Union each run with the overlapping runs of the previous row (8-connectivity:
    // runs touch when they overlap or meet diagonally).
    // Runs come in row-major order, so both rows are sorted by x and a moving
    // pointer into the previous row keeps this linear in the number of runs.
    let mut prev_row = 0..0;
    let mut row_start = 0usize;
    let mut cursor = 0usize;
    for i in 0..runs.len() {
        if i == 0 || runs[i].y != runs[i - 1].y {
            prev_row = if i > 0 && runs[i].y == runs[i - 1].y + 1 {
                row_start..i
            } else {
                i..i
            };
            row_start = i;
            cursor = prev_row.start;
        }
        let run = runs[i];
        while cursor < prev_row.end && runs[cursor].x_end < run.x_start {
            cursor += 1;
        }
        let mut j = cursor;
        while j < prev_row.end && runs[j].x_start <= run.x_end {
            let (a, b) = (
                find_root(&mut parent, i as u32),
                find_root(&mut parent, j as u32),
            );
            if a != b {
                parent[a.max(b) as usize] = a.min(b);
            }
            j += 1;
        }
    }
    // Accumulate per root.
    struct Acc {
        x0: u32,
        y0: u32,
        x1: u32,
        y1: u32,
        area: u32,
        sum: f64,
        max_raw: u16,
        max_at: PixelPoint,
        min_raw: u16,
        min_at: PixelPoint,
        seen: bool,
    }
    let w = frame.width() as usize;
    let counts = frame.counts();
    let mut slot_of_root = vec![u32::MAX; runs.len()];
    let mut accs: Vec<Acc> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let root = find_root(&mut parent, i as u32) as usize;
        if slot_of_root[root] == u32::MAX {
            slot_of_root[root] = accs.len() as u32;
            accs.push(Acc {
                x0: u32::MAX,
                y0: u32::MAX,
                x1: 0,
                y1: 0,
                area: 0,
                sum: 0.0,
                max_raw: 0,
                max_at: PixelPoint { x: 0, y: 0 },
                min_raw: u16::MAX,
                min_at: PixelPoint { x: 0, y: 0 },
                seen: false,
            });
        }
        let acc = &mut accs[slot_of_root[root] as usize];
        acc.x0 = acc.x0.min(run.x_start);
        acc.x1 = acc.x1.max(run.x_end);
        acc.y0 = acc.y0.min(run.y);
        acc.y1 = acc.y1.max(run.y + 1);
        acc.area += run.x_end - run.x_start;
        let row = &counts[run.y as usize * w..(run.y as usize + 1) * w];
        for x in run.x_start..run.x_end {
            let raw = row[x as usize];
            acc.sum += f64::from(lut.lookup(raw));
            let here = PixelPoint { x, y: run.y };
            // Strict comparisons keep the first pixel in row-major order on ties,
            // provided runs are visited in row-major order (they are).
            if !acc.seen || raw > acc.max_raw {
                acc.max_raw = raw;
                acc.max_at = here;
            }
            if !acc.seen || raw < acc.min_raw {
                acc.min_raw = raw;
                acc.min_at = here;
            }
            acc.seen = true;
        }
    }
    let regions = accs
        .into_iter()
        .map(|a| Hotspot {
            bbox: PixelRect {
                x: a.x0,
                y: a.y0,
                w: a.x1 - a.x0,
                h: a.y1 - a.y0,
            },
            area_px: a.area,
            max_c: f64::from(lut.lookup(a.max_raw)),
            max_at: a.max_at,
            mean_c: a.sum / f64::from(a.area),
            min_c: f64::from(lut.lookup(a.min_raw)),
            min_at: a.min_at,
        })
        .collect();
    Segmentation {
        regions,
        ..Segmentation::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radiometry::RadiometricParams;
    use proptest::prelude::*;

    /// T640-like constants with E = 1 and no atmosphere: °C depends on raw alone.
    fn converter() -> RawToCelsius {
        RawToCelsius::new(RadiometricParams {
            emissivity: 1.0,
            object_distance_m: 0.0,
            reflected_c: 20.0,
            atmosphere_c: 20.0,
            ir_window_c: 20.0,
            ir_window_transmission: 1.0,
            relative_humidity: 0.5,
            planck_r1: 17096.453,
            planck_r2: 0.046642166,
            planck_b: 1428.0,
            planck_f: 1.0,
            planck_o: -512.0,
            atm_alpha1: 0.006569,
            atm_alpha2: 0.01262,
            atm_beta1: -0.002276,
            atm_beta2: -0.00667,
            atm_x: 1.9,
        })
        .unwrap()
    }

    fn frame_from(rows: &[&str], cold: u16, hot: u16) -> RawFrame {
        let w = rows[0].len() as u32;
        let counts = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| if b == b'#' { hot } else { cold }))
            .collect();
        RawFrame::new(w, rows.len() as u32, counts).unwrap()
    }

    fn segment(frame: &RawFrame, options: SegmentOptions, roi: Option<&RoiMask>) -> Segmentation {
        let c = converter();
        let (lo, hi) = frame.min_max();
        let lut = CelsiusLut::for_range(&c, lo, hi);
        Segmenter::new(&c, options).segment(frame, &lut, roi)
    }

    /// A threshold between the test frames' cold (1000) and hot (3000) counts.
    fn mid() -> f64 {
        converter().celsius_or_nan(2000.0)
    }

    fn opts(threshold_c: f64, min_area_px: u32) -> SegmentOptions {
        SegmentOptions {
            threshold_c,
            min_area_px,
            ..SegmentOptions::default()
        }
    }

    #[test]
    fn diagonal_neighbours_join_and_separate_blobs_stay_apart() {
        let frame = frame_from(
            &[
                "#.....##", //
                ".#....##", //
                "..#.....", //
                "........", //
                "###.....", //
            ],
            1000,
            3000,
        );
        let s = segment(&frame, opts(mid(), 1), None);
        let mut areas: Vec<_> = s.regions.iter().map(|r| (r.bbox, r.area_px)).collect();
        areas.sort_by_key(|(b, _)| (b.y, b.x));
        assert_eq!(
            areas,
            vec![
                (
                    PixelRect {
                        x: 0,
                        y: 0,
                        w: 3,
                        h: 3
                    },
                    3
                ),
                (
                    PixelRect {
                        x: 6,
                        y: 0,
                        w: 2,
                        h: 2
                    },
                    4
                ),
                (
                    PixelRect {
                        x: 0,
                        y: 4,
                        w: 3,
                        h: 1
                    },
                    3
                ),
            ]
        );
    }

    #[test]
    fn u_shape_merges_into_one_region() {
        let frame = frame_from(&["#...#", "#...#", "#...#", "#####"], 1000, 3000);
        let s = segment(&frame, opts(mid(), 1), None);
        assert_eq!(s.regions.len(), 1);
        assert_eq!(s.regions[0].area_px, 11);
        assert_eq!(
            s.regions[0].bbox,
            PixelRect {
                x: 0,
                y: 0,
                w: 5,
                h: 4
            }
        );
    }

    #[test]
    fn threshold_is_exact_at_integer_counts() {
        let c = converter();
        let r = 2500u16;
        let t = c.celsius_or_nan(f64::from(r));
        let frame = RawFrame::new(3, 1, vec![r - 1, r, r + 1]).unwrap();
        // At exactly T(r), pixel r is included and r − 1 is not.
        let s = segment(&frame, opts(t, 1), None);
        assert_eq!(s.threshold_raw, Some(r));
        assert_eq!(
            s.regions[0].bbox,
            PixelRect {
                x: 1,
                y: 0,
                w: 2,
                h: 1
            }
        );
        // A hair above T(r) excludes r.
        let s = segment(&frame, opts(t + 1e-9, 1), None);
        assert_eq!(
            s.regions[0].bbox,
            PixelRect {
                x: 2,
                y: 0,
                w: 1,
                h: 1
            }
        );
    }

    #[test]
    fn statistics_come_from_the_lut() {
        let c = converter();
        let counts = vec![1000, 2000, 2600, 1000, 2400, 2800, 1000, 1000, 1000];
        let frame = RawFrame::new(3, 3, counts).unwrap();
        let s = segment(&frame, opts(c.celsius_or_nan(2000.0), 1), None);
        assert_eq!(s.regions.len(), 1);
        let h = &s.regions[0];
        assert_eq!(h.area_px, 4);
        assert_eq!(h.max_at, PixelPoint { x: 2, y: 1 });
        assert_eq!(h.min_at, PixelPoint { x: 1, y: 0 });
        let t = |r: f64| c.celsius_or_nan(r);
        assert!((h.max_c - t(2800.0)).abs() < 1e-4);
        assert!((h.min_c - t(2000.0)).abs() < 1e-4);
        let mean = (t(2000.0) + t(2600.0) + t(2400.0) + t(2800.0)) / 4.0;
        assert!((h.mean_c - mean).abs() < 1e-4, "{} vs {mean}", h.mean_c);
    }

    #[test]
    fn min_area_and_max_regions_are_counted() {
        let frame = frame_from(&["#.#.##", "......", "##.###"], 1000, 3000);
        let s = segment(&frame, opts(mid(), 2), None);
        assert_eq!(s.regions.len(), 3);
        assert_eq!(s.below_min_area, 2);
        let s = segment(
            &frame,
            SegmentOptions {
                max_regions: 1,
                ..opts(mid(), 2)
            },
            None,
        );
        assert_eq!((s.regions.len(), s.dropped_regions), (1, 2));
    }

    #[test]
    fn hottest_region_comes_first() {
        let counts = vec![2600, 1000, 3000, 1000, 2800];
        let frame = RawFrame::new(5, 1, counts).unwrap();
        let s = segment(&frame, opts(converter().celsius_or_nan(2500.0), 1), None);
        let xs: Vec<u32> = s.regions.iter().map(|r| r.max_at.x).collect();
        assert_eq!(xs, vec![2, 4, 0]);
    }

    #[test]
    fn cold_regions_below_the_threshold() {
        let frame = frame_from(&["###", "#.#", "###"], 1000, 3000);
        let s = segment(
            &frame,
            SegmentOptions {
                side: ThresholdSide::AtOrBelow,
                ..opts(converter().celsius_or_nan(1500.0), 1)
            },
            None,
        );
        assert_eq!(s.regions.len(), 1);
        assert_eq!(
            s.regions[0].bbox,
            PixelRect {
                x: 1,
                y: 1,
                w: 1,
                h: 1
            }
        );
    }

    #[test]
    fn unreachable_threshold_finds_nothing() {
        let frame = frame_from(&["###"], 1000, 3000);
        let s = segment(&frame, opts(5000.0, 1), None);
        assert_eq!((s.threshold_raw, s.regions.len()), (None, 0));
    }

    #[test]
    fn roi_rectangle_and_polygon_restrict_the_search() {
        let frame = frame_from(&["######", "######", "######", "######"], 1000, 3000);
        let rect = RegionOfInterest {
            name: Some("breaker".into()),
            shape: RoiShape::Rect(PixelRect {
                x: 1,
                y: 1,
                w: 2,
                h: 2,
            }),
        };
        let mask = RoiMask::build(6, 4, &[rect]).unwrap();
        let s = segment(&frame, opts(mid(), 1), Some(&mask));
        assert_eq!(
            s.regions[0].bbox,
            PixelRect {
                x: 1,
                y: 1,
                w: 2,
                h: 2
            }
        );
        // Right triangle with vertices on pixel corners: centres strictly inside count.
        let tri = RegionOfInterest {
            name: None,
            shape: RoiShape::Polygon(vec![[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]),
        };
        let mask = RoiMask::build(6, 4, &[tri]).unwrap();
        let inside: Vec<bool> = (0..4)
            .flat_map(|y| (0..6).map(move |x| (x, y)))
            .map(|(x, y)| mask.contains(x, y))
            .collect();
        let expected: Vec<bool> = (0..4)
            .flat_map(|y| (0..6).map(move |x| (x, y)))
            .map(|(x, y)| (x as f64 + 0.5) + (y as f64 + 0.5) < 4.0)
            .collect();
        assert_eq!(inside, expected);
        assert_eq!(
            segment(&frame, opts(mid(), 1), Some(&mask)).regions[0].area_px,
            6
        );
    }

    #[test]
    fn roi_errors_are_all_reported() {
        let errors = RoiMask::build(
            10,
            10,
            &[
                RegionOfInterest {
                    name: None,
                    shape: RoiShape::Polygon(vec![[0.0, 0.0], [1.0, 1.0]]),
                },
                RegionOfInterest {
                    name: None,
                    shape: RoiShape::Rect(PixelRect {
                        x: 20,
                        y: 0,
                        w: 5,
                        h: 5,
                    }),
                },
                RegionOfInterest {
                    name: None,
                    shape: RoiShape::Polygon(vec![[0.0, 0.0], [f64::NAN, 1.0], [2.0, 2.0]]),
                },
            ],
        )
        .unwrap_err();
        assert_eq!(errors.len(), 3);
        assert!(
            errors[1].to_string().contains("does not overlap"),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn roi_toml_shape() {
        #[derive(Deserialize)]
        struct Doc {
            roi: Vec<RegionOfInterest>,
        }
        let doc: Doc = toml::from_str(
            "[[roi]]\nname = \"phase a\"\nrect = [1, 2, 3, 4]\n[[roi]]\npolygon = [[0, 0], [4, 0], [0, 4]]\n",
        )
        .unwrap();
        assert_eq!(
            doc.roi[0].shape,
            RoiShape::Rect(PixelRect {
                x: 1,
                y: 2,
                w: 3,
                h: 4
            })
        );
        assert!(matches!(&doc.roi[1].shape, RoiShape::Polygon(p) if p.len() == 3));
        assert!(toml::from_str::<Doc>("[[roi]]\nrectangle = [1, 2, 3, 4]\n").is_err());
    }

    /// Reference labelling: flood fill, 8-connectivity.
    fn flood_fill_areas(mask: &[bool], w: usize, h: usize) -> Vec<u32> {
        let mut seen = vec![false; mask.len()];
        let mut areas = Vec::new();
        for start in 0..mask.len() {
            if !mask[start] || seen[start] {
                continue;
            }
            let mut stack = vec![start];
            seen[start] = true;
            let mut area = 0;
            while let Some(i) = stack.pop() {
                area += 1;
                let (x, y) = ((i % w) as i64, (i / w) as i64);
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        let (nx, ny) = (x + dx, y + dy);
                        if nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h {
                            let j = ny as usize * w + nx as usize;
                            if mask[j] && !seen[j] {
                                seen[j] = true;
                                stack.push(j);
                            }
                        }
                    }
                }
            }
            areas.push(area);
        }
        areas.sort_unstable();
        areas
    }

    proptest! {
        #[test]
        fn run_labelling_matches_flood_fill(w in 1usize..24, h in 1usize..24, seed in any::<u64>(), density in 0.05f64..0.95) {
            // A small deterministic generator keeps shrinking meaningful.
            let mut state = seed | 1;
            let mask: Vec<bool> = (0..w * h).map(|_| {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                (state % 1000) as f64 / 1000.0 < density
            }).collect();
            let counts = mask.iter().map(|&m| if m { 3000 } else { 1000 }).collect();
            let frame = RawFrame::new(w as u32, h as u32, counts).unwrap();
            let s = segment(&frame, SegmentOptions { max_regions: usize::MAX, ..opts(mid(), 1) }, None);
            let mut areas: Vec<u32> = s.regions.iter().map(|r| r.area_px).collect();
            areas.sort_unstable();
            prop_assert_eq!(areas, flood_fill_areas(&mask, w, h));
        }
    }
}
