//! Detection-driven measurement: the °C statistics of every detected component, and the
//! comparison of the phases of a circuit with each other (NETA's "ΔT between similar
//! components under similar loading", without anyone drawing regions).
//!
//! [`measure_components`] takes the frame's [`TemperatureImage`], the components a detector
//! found ([`DetectedComponent`]: class, confidence, box), the ambient reference and the
//! [`ComponentTables`], and gives a [`MeasuredComponent`] per component: max, mean and min
//! °C inside its box, where the hottest pixel is, ΔT over ambient, its phase position when
//! it belongs to a [`PhaseGroup`], and its severity.
//!
//! # Phase grouping
//! Components of one class form a group when they line up like the phases of a
//! three-phase circuit (two or three of them; the rule is deliberately strict, since a
//! wrong group compares unlike things):
//! - **Similar size**: each of width and height, largest ÷ smallest ≤
//!   [`ComponentOptions::max_size_ratio`] (1.5) over the group.
//! - **Aligned**: in a row, the spread of the box centres' *y* is ≤
//!   [`ComponentOptions::max_misalignment`] (0.5) × the mean box height; in a column,
//!   likewise for *x* and width.
//! - **Spaced like neighbours**: consecutive centres along the row (column) are ≥
//!   [`ComponentOptions::min_spacing`] (0.5) and ≤ [`ComponentOptions::max_spacing`] (6) mean
//!   box widths (heights) apart: closer is one object detected twice, further is another
//!   bay.
//!
//! Neighbour relations are chained; a chain of 2 or 3 that passes all three tests is a
//! group. Four or more in a line (two circuits side by side, a bus of insulators) cannot be
//! told apart into phases and form no group. Rows are looked for first, then columns among
//! the components left over; a component is in at most one group.
//!
//! # Reference and severity
//! Within a group the reference is the **coolest loaded member** (ties: the first in
//! position order), in the spirit of NETA's similar-component comparison: a healthy phase
//! under the same load is the baseline, and a deficiency shows as a rise over it. Taking
//! the coolest rather than the median keeps a single overheated phase of three from lifting
//! the baseline, and never gives a healthy phase a negative ΔT against a hot one (which
//! would read as a false cool exception).
//!
//! A member is **unloaded** (the cold phase of an open circuit or lost load) when the
//! group's median rose at least [`MIN_LOADED_RISE_C`] over ambient and the member rose
//! less than half as much. An unloaded member cannot
//! be the baseline; it is compared with the reference like the others, and the table's own
//! cool-exception rule (ΔT ≤ −10 °C on `neta-similar`) turns it into the cool exception.
//!
//! - Every member but the reference: [`ComponentTables::similar`] (`neta-similar`) against
//!   a [`ReferenceKind::SimilarComponent`] reference whose source names the reference,
//!   e.g. "bushing #1 of 3 (left)"; `similar` holds that comparison.
//! - The reference itself, and every component in no group: [`ComponentTables::ambient`]
//!   against the frame's ambient reference (the same table the frame's hotspots use,
//!   unless that table needs a similar component).
//!
//! The unloaded rule looks at the rise alone, not at the distance to the 10 °C step: the
//! shipped model's test frame has an open CT/PT phase only 9.5 °C colder than its loaded
//! siblings, and a first rule that also asked for ≥ 10 °C made it the baseline and flagged
//! both loaded phases. Two loaded phases 20 °C apart give a major discrepancy on the
//! hotter, not a cool exception on the cooler.
//!
//! The box statistics include whatever background the box holds: the max is the
//! component's, the mean is the box's.
//!
//! # Findings
//! Thresholded hotspots are reported as without a detector, each carrying the component
//! whose box holds its max pixel (none outside every box). The *reportable* phase
//! comparisons (a level, or a cool exception) are regions of their own, after the
//! hotspots, reported with the `neta-similar` severity and `reference.similar` naming the
//! sibling. A hot phase can so give two findings — its absolute reading on the camera's
//! table and its imbalance on `neta-similar` — answering two questions; three equally hot
//! phases give no comparison finding. The wiring of detector, measurement and regions is
//! `crate::inspection::measure_frame_components`, shared by the agent and `inspect`.
//!
//! # Known limits
//! The grouping looks at boxes only, not at wiring, so two unrelated components of one
//! class that happen to line up are compared. Preview (non-radiometric) frames report
//! nothing until a detector runs on them.
//!
//! Pure: no IO.
//!
//! [`ReferenceKind::SimilarComponent`]: crate::severity::ReferenceKind::SimilarComponent

use crate::analysis::AssessedHotspot;
use crate::finding::DetectedComponent;
use crate::geometry::{PixelPoint, PixelRect};
use crate::hotspot::Hotspot;
use crate::image::TemperatureImage;
use crate::severity::{
    builtin_tables, ReferenceTemperature, SeverityAssessment, SeverityBasis, SeverityInputs,
    SeverityTable, NETA_AMBIENT, NETA_SIMILAR,
};
use serde::{Deserialize, Serialize};

/// The least rise over ambient, °C, of a group's median member for the group to count as
/// loaded: below it every member is near ambient and none is called unloaded.
pub const MIN_LOADED_RISE_C: f64 = 5.0;

/// Tolerances of the phase grouping (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentOptions {
    /// Largest ÷ smallest width (and height) within a group.
    pub max_size_ratio: f64,
    /// Spread of the centres across the line ÷ the mean box size across it.
    pub max_misalignment: f64,
    /// Smallest distance of consecutive centres along the line ÷ the mean box size along it.
    pub min_spacing: f64,
    /// Largest distance of consecutive centres along the line ÷ the mean box size along it.
    pub max_spacing: f64,
}

impl Default for ComponentOptions {
    fn default() -> Self {
        Self {
            max_size_ratio: 1.5,
            max_misalignment: 0.5,
            min_spacing: 0.5,
            max_spacing: 6.0,
        }
    }
}

/// The tables components are assessed with.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentTables {
    /// For a group member against its reference sibling (`OverSimilar` or `OverReference`).
    pub similar: SeverityTable,
    /// For a component in no group, and a group's reference, against ambient.
    pub ambient: SeverityTable,
}

impl ComponentTables {
    /// The tables for a camera whose hotspots are assessed with `table`: `table` itself
    /// where its basis fits, otherwise the built-in `neta-similar` (sibling comparisons) or
    /// `neta-ambient` (components measured against ambient).
    pub fn for_table(table: &SeverityTable) -> Self {
        let builtin = |id: &str| {
            builtin_tables()
                .into_iter()
                .find(|t| t.id == id)
                .expect("built-in table")
        };
        let similar = match table.basis {
            SeverityBasis::OverSimilar | SeverityBasis::OverReference => table.clone(),
            _ => builtin(NETA_SIMILAR),
        };
        let ambient = match table.basis {
            SeverityBasis::OverSimilar => builtin(NETA_AMBIENT),
            _ => table.clone(),
        };
        Self { similar, ambient }
    }
}

/// Which way a group's members line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupAxis {
    /// Side by side, left to right.
    Row,
    /// One above the other, top to bottom.
    Column,
}

/// A component's place in its phase group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhasePosition {
    /// Index of the group in [`ComponentMeasurement::groups`].
    pub group: usize,
    /// 0-based position along the line (left to right, top to bottom).
    pub index: usize,
    /// Members in the group (2 or 3).
    pub size: usize,
    /// Row or column.
    pub axis: GroupAxis,
    /// E.g. "bushing #1 of 3 (left)".
    pub label: String,
    /// True for the group's reference (its coolest loaded member).
    pub reference: bool,
}

/// A member's comparison with its group's reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimilarComparison {
    /// The reference, e.g. "bushing #1 of 3 (left)".
    pub reference_label: String,
    /// The reference's max °C.
    pub reference_c: f64,
    /// This component's max minus the reference's, °C.
    pub delta_t_similar_c: f64,
}

/// One detected component, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuredComponent {
    /// The detection, its box clipped to the image.
    pub component: DetectedComponent,
    /// Hottest pixel in the box, °C.
    pub max_c: f64,
    /// Where it is.
    pub max_at: PixelPoint,
    /// Mean over the box, °C.
    pub mean_c: f64,
    /// Coldest pixel in the box, °C.
    pub min_c: f64,
    /// Where it is.
    pub min_at: PixelPoint,
    /// Pixels in the box.
    pub area_px: u32,
    /// `max_c` minus the ambient reference, °C.
    pub delta_t_ambient_c: f64,
    /// Its place in a phase group, when it is in one.
    pub phase: Option<PhasePosition>,
    /// Its comparison with the group's reference (members other than the reference).
    pub similar: Option<SimilarComparison>,
    /// Against its sibling (`similar` set) or against ambient.
    pub severity: SeverityAssessment,
}

impl MeasuredComponent {
    /// The component as a region, for tracking and findings.
    pub fn as_region(&self) -> AssessedHotspot {
        AssessedHotspot {
            hotspot: Hotspot {
                bbox: self.component.bbox,
                area_px: self.area_px,
                max_c: self.max_c,
                max_at: self.max_at,
                mean_c: self.mean_c,
                min_c: self.min_c,
                min_at: self.min_at,
            },
            severity: self.severity.clone(),
        }
    }
}

/// A phase group: same-class components lined up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseGroup {
    /// The members' class.
    pub class: String,
    /// Row or column.
    pub axis: GroupAxis,
    /// Indices in [`ComponentMeasurement::components`], in position order.
    pub members: Vec<usize>,
    /// Index (in `components`) of the reference member.
    pub reference: usize,
}

/// Every component of a frame, measured, and the phase groups among them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentMeasurement {
    /// In detection order (detections wholly outside the image left out).
    pub components: Vec<MeasuredComponent>,
    /// The phase groups.
    pub groups: Vec<PhaseGroup>,
    /// Detections whose box lay wholly outside the image.
    pub outside_image: u32,
}

impl ComponentMeasurement {
    /// The reportable sibling comparisons (a level above 0 or a cool exception), as
    /// regions with their component: what becomes a phase finding.
    pub fn comparison_regions(&self) -> Vec<(&MeasuredComponent, AssessedHotspot)> {
        self.components
            .iter()
            .filter(|c| c.similar.is_some() && c.severity.is_reportable())
            .map(|c| (c, c.as_region()))
            .collect()
    }

    /// Flags every assessment as qualitative (the frame failed the quality gate).
    pub fn mark_qualitative(&mut self) {
        for c in &mut self.components {
            c.severity.qualitative = true;
        }
    }

    /// The component a region belongs to: the compared component itself for a phase
    /// comparison (same box, a similar-component assessment), otherwise the component
    /// whose box holds the region's hottest pixel (coldest, for a cool exception).
    pub fn component_of(&self, region: &AssessedHotspot) -> Option<DetectedComponent> {
        let compared = self.components.iter().find(|c| {
            c.similar.is_some()
                && c.component.bbox == region.hotspot.bbox
                && c.severity.table == region.severity.table
        });
        let anchor = if region.severity.cool_exception {
            region.hotspot.min_at
        } else {
            region.hotspot.max_at
        };
        compared
            .or_else(|| self.containing(anchor))
            .map(|c| c.component.clone())
    }

    /// The component whose box contains `p`, the most confident on overlaps.
    pub fn containing(&self, p: PixelPoint) -> Option<&MeasuredComponent> {
        self.components
            .iter()
            .filter(|c| c.component.bbox.contains(p))
            .max_by(|a, b| a.component.confidence.total_cmp(&b.component.confidence))
    }
}

/// Measures every detected component in `image` and compares the members of each phase
/// group (see the module documentation).
pub fn measure_components(
    image: &TemperatureImage,
    detections: &[DetectedComponent],
    ambient: &ReferenceTemperature,
    tables: &ComponentTables,
    options: &ComponentOptions,
) -> ComponentMeasurement {
    let mut out = ComponentMeasurement::default();
    for d in detections {
        let Some(bbox) = clip(d.bbox, image.width(), image.height()) else {
            out.outside_image += 1;
            continue;
        };
        let stats = box_stats(image, bbox);
        out.components.push(MeasuredComponent {
            component: DetectedComponent {
                class: d.class.clone(),
                confidence: d.confidence,
                bbox,
            },
            max_c: stats.max_c,
            max_at: stats.max_at,
            mean_c: stats.mean_c,
            min_c: stats.min_c,
            min_at: stats.min_at,
            area_px: bbox.w * bbox.h,
            delta_t_ambient_c: stats.max_c - ambient.celsius,
            phase: None,
            similar: None,
            severity: tables.ambient.assess(&SeverityInputs {
                max_c: stats.max_c,
                reference: Some(ambient.clone()),
            }),
        });
    }
    let boxes: Vec<(String, PixelRect)> = out
        .components
        .iter()
        .map(|c| (c.component.class.clone(), c.component.bbox))
        .collect();
    for (axis, members) in find_groups(&boxes, options) {
        compare_group(&mut out, axis, members, ambient, tables);
    }
    out
}

/// Compares the members of one group (in position order) and records the group.
fn compare_group(
    out: &mut ComponentMeasurement,
    axis: GroupAxis,
    members: Vec<usize>,
    ambient: &ReferenceTemperature,
    tables: &ComponentTables,
) {
    let group = out.groups.len();
    let size = members.len();
    let class = out.components[members[0]].component.class.clone();
    let labels: Vec<String> = (0..size)
        .map(|i| {
            format!(
                "{class} #{} of {size} ({})",
                i + 1,
                position_name(axis, i, size)
            )
        })
        .collect();
    let maxima: Vec<f64> = members.iter().map(|&m| out.components[m].max_c).collect();
    let mut sorted = maxima.clone();
    sorted.sort_by(f64::total_cmp);
    let median = if size % 2 == 1 {
        sorted[size / 2]
    } else {
        (sorted[size / 2 - 1] + sorted[size / 2]) / 2.0
    };
    // Judged by the rise over ambient alone: a phase that carries under half the load
    // heat of the group's median is not "under similar load", however close its max is
    // to the table's cool-exception step (a 9.5 °C-colder open phase must still not
    // become the baseline that flags its loaded siblings). Whether it *is* the cool
    // exception stays the table's call (ΔT at or below its cool-exception step against the reference).
    let median_rise = median - ambient.celsius;
    let unloaded = |max_c: f64| {
        median_rise >= MIN_LOADED_RISE_C && max_c - ambient.celsius <= median_rise / 2.0
    };
    // The hottest member is never unloaded (it is not below the median), so there is one.
    let reference = (0..size)
        .filter(|&i| !unloaded(maxima[i]))
        .min_by(|&a, &b| maxima[a].total_cmp(&maxima[b]).then(a.cmp(&b)))
        .expect("the hottest member is loaded");
    for (i, &m) in members.iter().enumerate() {
        let c = &mut out.components[m];
        c.phase = Some(PhasePosition {
            group,
            index: i,
            size,
            axis,
            label: labels[i].clone(),
            reference: i == reference,
        });
        if i == reference {
            continue; // measured against ambient, as set when it was measured
        }
        let reference_c = maxima[reference];
        c.similar = Some(SimilarComparison {
            reference_label: labels[reference].clone(),
            reference_c,
            delta_t_similar_c: c.max_c - reference_c,
        });
        c.severity = tables.similar.assess(&SeverityInputs {
            max_c: c.max_c,
            reference: Some(ReferenceTemperature::similar_component(
                reference_c,
                labels[reference].clone(),
            )),
        });
    }
    out.groups.push(PhaseGroup {
        class,
        axis,
        reference: members[reference],
        members,
    });
}

fn position_name(axis: GroupAxis, index: usize, size: usize) -> &'static str {
    let last = index + 1 == size;
    match (axis, index, last) {
        (GroupAxis::Row, 0, _) => "left",
        (GroupAxis::Row, _, true) => "right",
        (GroupAxis::Row, _, false) => "middle",
        (GroupAxis::Column, 0, _) => "top",
        (GroupAxis::Column, _, true) => "bottom",
        (GroupAxis::Column, _, false) => "middle",
    }
}

/// A box's centre and size along and across an axis.
#[derive(Debug, Clone, Copy)]
struct Placed {
    along: f64,
    across: f64,
    size_along: f64,
    size_across: f64,
}

fn placed(r: PixelRect, axis: GroupAxis) -> Placed {
    let (cx, cy) = (
        f64::from(r.x) + f64::from(r.w) / 2.0,
        f64::from(r.y) + f64::from(r.h) / 2.0,
    );
    let (w, h) = (f64::from(r.w), f64::from(r.h));
    match axis {
        GroupAxis::Row => Placed {
            along: cx,
            across: cy,
            size_along: w,
            size_across: h,
        },
        GroupAxis::Column => Placed {
            along: cy,
            across: cx,
            size_along: h,
            size_across: w,
        },
    }
}

/// The groups among `boxes` (class, box), rows first, each in position order.
fn find_groups(
    boxes: &[(String, PixelRect)],
    options: &ComponentOptions,
) -> Vec<(GroupAxis, Vec<usize>)> {
    let mut taken = vec![false; boxes.len()];
    let mut groups = Vec::new();
    for axis in [GroupAxis::Row, GroupAxis::Column] {
        let free: Vec<usize> = (0..boxes.len()).filter(|&i| !taken[i]).collect();
        // Union-find over "neighbours on this axis".
        let mut parent: Vec<usize> = (0..boxes.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for (n, &a) in free.iter().enumerate() {
            for &b in &free[n + 1..] {
                if boxes[a].0 == boxes[b].0 && neighbours(boxes[a].1, boxes[b].1, axis, options) {
                    let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                    parent[ra] = rb;
                }
            }
        }
        let mut chains: Vec<(usize, Vec<usize>)> = Vec::new();
        for &i in &free {
            let r = root(&mut parent, i);
            match chains.iter_mut().find(|(chain_root, _)| *chain_root == r) {
                Some((_, chain)) => chain.push(i),
                None => chains.push((r, vec![i])),
            }
        }
        for (_, mut chain) in chains {
            if !(2..=3).contains(&chain.len()) {
                continue;
            }
            chain.sort_by(|&a, &b| {
                placed(boxes[a].1, axis)
                    .along
                    .total_cmp(&placed(boxes[b].1, axis).along)
            });
            let rects: Vec<PixelRect> = chain.iter().map(|&i| boxes[i].1).collect();
            if is_line(&rects, axis, options) {
                for &i in &chain {
                    taken[i] = true;
                }
                groups.push((axis, chain));
            }
        }
    }
    groups
}

fn similar_size(rects: &[PixelRect], max_ratio: f64) -> bool {
    let ratio = |f: fn(&PixelRect) -> u32| {
        let lo = rects.iter().map(f).min().unwrap_or(0);
        let hi = rects.iter().map(f).max().unwrap_or(0);
        lo > 0 && f64::from(hi) / f64::from(lo) <= max_ratio
    };
    ratio(|r| r.w) && ratio(|r| r.h)
}

/// Whether two boxes are neighbours in a line along `axis`.
fn neighbours(a: PixelRect, b: PixelRect, axis: GroupAxis, options: &ComponentOptions) -> bool {
    is_line(&[a, b], axis, options)
}

/// Whether boxes sorted along `axis` form a line: similar size, aligned, spaced like
/// neighbours.
fn is_line(rects: &[PixelRect], axis: GroupAxis, options: &ComponentOptions) -> bool {
    if !similar_size(rects, options.max_size_ratio) {
        return false;
    }
    let mut p: Vec<Placed> = rects.iter().map(|&r| placed(r, axis)).collect();
    p.sort_by(|a, b| a.along.total_cmp(&b.along));
    let n = p.len() as f64;
    let mean_across = p.iter().map(|q| q.size_across).sum::<f64>() / n;
    let mean_along = p.iter().map(|q| q.size_along).sum::<f64>() / n;
    let lo = p.iter().map(|q| q.across).fold(f64::INFINITY, f64::min);
    let hi = p.iter().map(|q| q.across).fold(f64::NEG_INFINITY, f64::max);
    if hi - lo > options.max_misalignment * mean_across {
        return false;
    }
    p.windows(2).all(|pair| {
        let gap = pair[1].along - pair[0].along;
        gap >= options.min_spacing * mean_along && gap <= options.max_spacing * mean_along
    })
}

/// `r` clipped to a `width`×`height` image; `None` when nothing of it is inside.
fn clip(r: PixelRect, width: u32, height: u32) -> Option<PixelRect> {
    let x1 = (u64::from(r.x) + u64::from(r.w)).min(u64::from(width)) as u32;
    let y1 = (u64::from(r.y) + u64::from(r.h)).min(u64::from(height)) as u32;
    (r.x < x1 && r.y < y1).then(|| PixelRect {
        x: r.x,
        y: r.y,
        w: x1 - r.x,
        h: y1 - r.y,
    })
}

struct BoxStats {
    max_c: f64,
    max_at: PixelPoint,
    mean_c: f64,
    min_c: f64,
    min_at: PixelPoint,
}

/// Statistics of a box that lies inside the image (first pixel in row-major order on
/// ties).
fn box_stats(image: &TemperatureImage, r: PixelRect) -> BoxStats {
    let w = image.width() as usize;
    let c = image.celsius();
    let mut s = BoxStats {
        max_c: f64::NEG_INFINITY,
        max_at: PixelPoint { x: r.x, y: r.y },
        mean_c: 0.0,
        min_c: f64::INFINITY,
        min_at: PixelPoint { x: r.x, y: r.y },
    };
    let mut sum = 0.0;
    for y in r.y..r.y + r.h {
        let row = &c[y as usize * w..];
        for x in r.x..r.x + r.w {
            let v = f64::from(row[x as usize]);
            sum += v;
            if v > s.max_c {
                s.max_c = v;
                s.max_at = PixelPoint { x, y };
            }
            if v < s.min_c {
                s.min_c = v;
                s.min_at = PixelPoint { x, y };
            }
        }
    }
    s.mean_c = sum / f64::from(r.w * r.h);
    s
}

#[cfg(test)]
mod tests;
