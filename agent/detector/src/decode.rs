//! From a model's output tensor to [`Detection`]s in frame pixels: which of the three
//! YOLO output layouts it is, the confidence threshold, class-wise NMS, the inverse
//! letterbox and clipping. Pure code over slices, so every rule is unit-tested without
//! ONNX Runtime.
//!
//! | layout | shape | a row | score |
//! |---|---|---|---|
//! | [`OutputLayout::Yolov8`] (YOLOv8, YOLO11, YOLOv5u) | `[1, 4+nc, N]` | cx, cy, w, h, nc class scores | best class score (already sigmoid; no objectness) |
//! | [`OutputLayout::Yolov5`] (classic YOLOv5) | `[1, N, 5+nc]` | cx, cy, w, h, objectness, nc class scores | objectness × best class score |
//! | [`OutputLayout::End2end`] (NMS inside the model) | `[1, K, 6]` | x1, y1, x2, y2, score, class | score; no NMS here |
//!
//! Coordinates are in model-input (letterboxed) pixels in every layout.

use super::config::LayoutChoice;
use super::metadata::ClassNames;
use super::DetectorError;
use crate::Detection;
use chitti_common::detector_input::Letterbox;
use chitti_common::geometry::PixelRect;
use serde::{Deserialize, Serialize};

/// Most candidates that go into NMS (the highest scores), as Ultralytics caps them: a
/// model that answers "everything" at a low threshold costs bounded time.
pub const MAX_NMS_CANDIDATES: usize = 30_000;

/// How the output tensor is laid out (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputLayout {
    /// `[1, 4+nc, N]`.
    Yolov8,
    /// `[1, N, 5+nc]`.
    Yolov5,
    /// `[1, K, 6]`.
    End2end,
}

impl OutputLayout {
    /// The layout's name in messages and config.
    pub fn label(self) -> &'static str {
        match self {
            Self::Yolov8 => "yolov8",
            Self::Yolov5 => "yolov5",
            Self::End2end => "end2end",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Yolov8 => "yolov8 [1, 4+nc, N]",
            Self::Yolov5 => "yolov5 [1, N, 5+nc]",
            Self::End2end => "end2end [1, K, 6]",
        }
    }
}

/// A decoded layout: which one, how many classes, and how many rows/anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The layout.
    pub kind: OutputLayout,
    /// Classes per row (1 for end2end, whose rows carry a class index).
    pub classes: usize,
    /// Candidate boxes in the output (N or K).
    pub rows: usize,
}

impl Layout {
    /// Values in an output of this layout.
    pub fn value_count(&self) -> usize {
        self.rows
            * match self.kind {
                OutputLayout::Yolov8 => 4 + self.classes,
                OutputLayout::Yolov5 => 5 + self.classes,
                OutputLayout::End2end => 6,
            }
    }

    /// The layout of an output tensor of `shape`, given the number of class names the
    /// model declares (`None` without `names`), its `end2end` key and the configured
    /// choice. A shape that fits no layout, or more than one with nothing to tell them
    /// apart, is an error naming the shape and the candidates.
    pub fn detect(
        shape: &[i64],
        names: Option<usize>,
        end2end: Option<bool>,
        choice: LayoutChoice,
    ) -> Result<Self, DetectorError> {
        let (a, b) = match shape {
            [1, a, b] | [a, b] if *a > 0 && *b > 0 => (*a as usize, *b as usize),
            _ => {
                return Err(DetectorError::UnknownLayout {
                    shape: shape.to_vec(),
                    expected: "a detector output is [1, rows, columns]".into(),
                })
            }
        };
        let fits = |kind: OutputLayout| -> Option<Layout> {
            let (classes, rows) = match kind {
                OutputLayout::Yolov8 => (a.checked_sub(4)?, b),
                OutputLayout::Yolov5 => (b.checked_sub(5)?, a),
                OutputLayout::End2end => (usize::from(b == 6), a),
            };
            if classes == 0 {
                return None;
            }
            if kind != OutputLayout::End2end {
                if let Some(nc) = names {
                    if classes != nc {
                        return None;
                    }
                }
            }
            Some(Layout {
                kind,
                classes,
                rows,
            })
        };
        let expected = |names: Option<usize>| match names {
            Some(nc) => format!(
                "with {nc} class names: yolov8 [1, {}, N], yolov5 [1, N, {}] or end2end [1, K, 6]",
                nc + 4,
                nc + 5
            ),
            None => "yolov8 [1, 4+nc, N], yolov5 [1, N, 5+nc] or end2end [1, K, 6]".into(),
        };
        let forced = match choice {
            LayoutChoice::Auto => None,
            LayoutChoice::Yolov8 => Some(OutputLayout::Yolov8),
            LayoutChoice::Yolov5 => Some(OutputLayout::Yolov5),
            LayoutChoice::End2end => Some(OutputLayout::End2end),
        };
        if let Some(kind) = forced.or(end2end.filter(|&e| e).map(|_| OutputLayout::End2end)) {
            return fits(kind).ok_or_else(|| DetectorError::UnknownLayout {
                shape: shape.to_vec(),
                expected: format!(
                    "{} (the {} says so)",
                    kind.describe(),
                    if forced.is_some() {
                        "configured detector.layout"
                    } else {
                        "model's end2end key"
                    }
                ),
            });
        }
        let mut candidates: Vec<Layout> = [OutputLayout::Yolov8, OutputLayout::Yolov5]
            .into_iter()
            .filter_map(fits)
            .collect();
        if end2end.is_none() {
            candidates.extend(fits(OutputLayout::End2end));
        }
        if names.is_none() && candidates.len() > 1 {
            // Without names the class count is free, so most shapes fit both anchor
            // layouts; real exports have many more anchors than classes.
            candidates.retain(|l| match l.kind {
                OutputLayout::Yolov8 => a < b,
                OutputLayout::Yolov5 | OutputLayout::End2end => a > b,
            });
        }
        match candidates.as_slice() {
            [one] => Ok(*one),
            [] => Err(DetectorError::UnknownLayout {
                shape: shape.to_vec(),
                expected: expected(names),
            }),
            many => Err(DetectorError::AmbiguousLayout {
                shape: shape.to_vec(),
                candidates: many
                    .iter()
                    .map(|l| l.kind.label())
                    .collect::<Vec<_>>()
                    .join(" or "),
            }),
        }
    }
}

/// Post-processing settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeSettings {
    /// Lowest score kept, 0..1.
    pub confidence: f32,
    /// Two boxes of one class overlapping by more than this IoU are one object.
    pub iou: f32,
    /// Most detections returned (highest scores first).
    pub max_detections: usize,
}

/// A candidate box in model pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    x1: f32,
    y1: f32,
    x2: f32,
    y2: f32,
    score: f32,
    class: usize,
}

/// Decodes `output` (row-major, of the shape `layout` was detected from) into
/// detections in frame pixels: confidence threshold, class-wise NMS (not for end2end
/// models, which did their own), highest scores first, at most `max_detections`.
pub fn decode(
    output: &[f32],
    layout: &Layout,
    settings: &DecodeSettings,
    letterbox: &Letterbox,
    frame: (u32, u32),
    names: &ClassNames,
) -> Vec<Detection> {
    let mut candidates = candidates(output, layout, settings.confidence);
    // Boxes wholly in the letterbox border are not in the frame: gone before they can
    // take a place among the max_detections or suppress a box that is.
    candidates.retain(|c| to_frame(c, letterbox, frame).is_some());
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(MAX_NMS_CANDIDATES);
    let kept = match layout.kind {
        OutputLayout::End2end => {
            candidates.truncate(settings.max_detections);
            candidates
        }
        _ => nms(&candidates, settings.iou, settings.max_detections),
    };
    kept.iter()
        .filter_map(|c| {
            Some(Detection {
                class: names.name(c.class),
                confidence: f64::from(c.score),
                bbox: to_frame(c, letterbox, frame)?,
            })
        })
        .collect()
}

/// Every row scoring at least `confidence`.
fn candidates(output: &[f32], layout: &Layout, confidence: f32) -> Vec<Candidate> {
    let (nc, n) = (layout.classes, layout.rows);
    let mut out = Vec::new();
    let finite = |v: f32| if v.is_finite() { v } else { 0.0 };
    match layout.kind {
        OutputLayout::Yolov8 => {
            // Class-major: walk each class row in memory order, keeping the best class
            // per anchor, instead of striding through memory per anchor.
            let mut best = vec![f32::NEG_INFINITY; n];
            let mut best_class = vec![0usize; n];
            for c in 0..nc {
                let row = &output[(4 + c) * n..(5 + c) * n];
                for (i, &s) in row.iter().enumerate() {
                    if s > best[i] {
                        best[i] = s;
                        best_class[i] = c;
                    }
                }
            }
            for i in 0..n {
                let score = finite(best[i]);
                if score < confidence || score <= 0.0 {
                    continue;
                }
                let (cx, cy, w, h) = (
                    output[i],
                    output[n + i],
                    output[2 * n + i],
                    output[3 * n + i],
                );
                out.push(from_centre(cx, cy, w, h, score, best_class[i]));
            }
        }
        OutputLayout::Yolov5 => {
            let width = 5 + nc;
            for row in output.chunks_exact(width).take(n) {
                let objectness = finite(row[4]);
                if objectness < confidence || objectness <= 0.0 {
                    continue; // obj × class ≤ obj: nothing in this row can pass
                }
                let (class, class_score) = row[5..].iter().copied().enumerate().fold(
                    (0, f32::NEG_INFINITY),
                    |best, (c, s)| {
                        if s > best.1 {
                            (c, s)
                        } else {
                            best
                        }
                    },
                );
                let score = objectness * finite(class_score);
                if score < confidence || score <= 0.0 {
                    continue;
                }
                out.push(from_centre(row[0], row[1], row[2], row[3], score, class));
            }
        }
        OutputLayout::End2end => {
            for row in output.chunks_exact(6).take(n) {
                let score = finite(row[4]);
                if score < confidence || score <= 0.0 || !row[5].is_finite() || row[5] < 0.0 {
                    continue;
                }
                out.push(Candidate {
                    x1: row[0],
                    y1: row[1],
                    x2: row[2],
                    y2: row[3],
                    score,
                    class: row[5].round() as usize,
                });
            }
        }
    }
    out.retain(|c| [c.x1, c.y1, c.x2, c.y2].iter().all(|v| v.is_finite()));
    out
}

fn from_centre(cx: f32, cy: f32, w: f32, h: f32, score: f32, class: usize) -> Candidate {
    Candidate {
        x1: cx - w / 2.0,
        y1: cy - h / 2.0,
        x2: cx + w / 2.0,
        y2: cy + h / 2.0,
        score,
        class,
    }
}

fn iou(a: &Candidate, b: &Candidate) -> f32 {
    let w = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let h = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let inter = w * h;
    let area = |c: &Candidate| (c.x2 - c.x1).max(0.0) * (c.y2 - c.y1).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Greedy class-wise NMS over candidates sorted by score (highest first).
fn nms(sorted: &[Candidate], iou_threshold: f32, max: usize) -> Vec<Candidate> {
    let mut kept: Vec<Candidate> = Vec::new();
    for c in sorted {
        if kept.len() >= max {
            break;
        }
        if kept
            .iter()
            .all(|k| k.class != c.class || iou(k, c) <= iou_threshold)
        {
            kept.push(*c);
        }
    }
    kept
}

/// A model-pixel box in frame pixels, clipped to the frame; `None` when nothing of it
/// is inside the frame (a box in the letterbox border).
fn to_frame(
    c: &Candidate,
    letterbox: &Letterbox,
    (width, height): (u32, u32),
) -> Option<PixelRect> {
    let (x1, y1) = letterbox.to_source(c.x1, c.y1);
    let (x2, y2) = letterbox.to_source(c.x2, c.y2);
    let (w, h) = (width as f32, height as f32);
    let (x1, x2) = (x1.clamp(0.0, w), x2.clamp(0.0, w));
    let (y1, y2) = (y1.clamp(0.0, h), y2.clamp(0.0, h));
    if x2 <= x1 || y2 <= y1 {
        return None;
    }
    let x = (x1.round() as u32).min(width - 1);
    let y = (y1.round() as u32).min(height - 1);
    Some(PixelRect {
        x,
        y,
        w: (x2.round() as u32).saturating_sub(x).max(1),
        h: (y2.round() as u32).saturating_sub(y).max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: DecodeSettings = DecodeSettings {
        confidence: 0.25,
        iou: 0.45,
        max_detections: 100,
    };

    fn names(list: &[&str]) -> ClassNames {
        ClassNames::new(list.iter().enumerate().map(|(i, n)| (i, n.to_string())))
    }

    fn rect(x: u32, y: u32, w: u32, h: u32) -> PixelRect {
        PixelRect { x, y, w, h }
    }

    #[test]
    fn layouts_are_told_apart_by_shape_and_class_count() {
        let l = Layout::detect(&[1, 10, 8400], Some(6), None, LayoutChoice::Auto).unwrap();
        assert_eq!((l.kind, l.classes, l.rows), (OutputLayout::Yolov8, 6, 8400));
        let l = Layout::detect(&[1, 25200, 11], Some(6), None, LayoutChoice::Auto).unwrap();
        assert_eq!(
            (l.kind, l.classes, l.rows),
            (OutputLayout::Yolov5, 6, 25200)
        );
        let l = Layout::detect(&[1, 300, 6], Some(6), None, LayoutChoice::Auto).unwrap();
        assert_eq!((l.kind, l.rows), (OutputLayout::End2end, 300));
        let l = Layout::detect(&[1, 300, 6], Some(6), Some(true), LayoutChoice::Auto).unwrap();
        assert_eq!(l.kind, OutputLayout::End2end);
        // Without names the anchors outnumber the classes.
        let l = Layout::detect(&[1, 84, 8400], None, None, LayoutChoice::Auto).unwrap();
        assert_eq!((l.kind, l.classes), (OutputLayout::Yolov8, 80));
        let l = Layout::detect(&[1, 25200, 85], None, Some(false), LayoutChoice::Auto).unwrap();
        assert_eq!((l.kind, l.classes), (OutputLayout::Yolov5, 80));
        let l = Layout::detect(&[84, 8400], None, None, LayoutChoice::Auto).unwrap();
        assert_eq!(l.kind, OutputLayout::Yolov8, "a squeezed batch");
    }

    #[test]
    fn a_one_class_v5_shape_is_ambiguous_until_metadata_or_config_says() {
        let err = Layout::detect(&[1, 25200, 6], Some(1), None, LayoutChoice::Auto).unwrap_err();
        assert!(
            matches!(&err, DetectorError::AmbiguousLayout { candidates, .. } if candidates == "yolov5 or end2end"),
            "{err}"
        );
        assert!(err.to_string().contains("detector.layout"), "{err}");
        let l = Layout::detect(&[1, 25200, 6], Some(1), Some(false), LayoutChoice::Auto).unwrap();
        assert_eq!(l.kind, OutputLayout::Yolov5);
        let l = Layout::detect(&[1, 25200, 6], Some(1), None, LayoutChoice::End2end).unwrap();
        assert_eq!(l.kind, OutputLayout::End2end);
    }

    #[test]
    fn shapes_that_fit_no_layout_are_errors_naming_the_shape() {
        for (shape, names) in [
            (&[1, 10, 10][..], Some(3)),
            (&[1, 3, 640, 640][..], None),
            (&[1, 0, 6][..], None),
            (&[2, 84, 8400][..], None),
        ] {
            let err = Layout::detect(shape, names, None, LayoutChoice::Auto).unwrap_err();
            assert!(
                matches!(err, DetectorError::UnknownLayout { .. }),
                "{shape:?}: {err}"
            );
            assert!(err.to_string().contains(&format!("{shape:?}")), "{err}");
        }
        let err = Layout::detect(&[1, 10, 8400], Some(3), None, LayoutChoice::Yolov8).unwrap_err();
        assert!(
            err.to_string().contains("configured detector.layout"),
            "{err}"
        );
        let err =
            Layout::detect(&[1, 10, 8400], Some(6), Some(true), LayoutChoice::Auto).unwrap_err();
        assert!(err.to_string().contains("end2end key"), "{err}");
    }

    /// A v8 output of `anchors` (cx, cy, w, h, class, score) with `nc` classes.
    fn v8_output(nc: usize, anchors: &[(f32, f32, f32, f32, usize, f32)]) -> Vec<f32> {
        let n = anchors.len();
        let mut out = vec![0.0; (4 + nc) * n];
        for (i, &(cx, cy, w, h, c, s)) in anchors.iter().enumerate() {
            out[i] = cx;
            out[n + i] = cy;
            out[2 * n + i] = w;
            out[3 * n + i] = h;
            for k in 0..nc {
                out[(4 + k) * n + i] = 0.01;
            }
            out[(4 + c) * n + i] = s;
        }
        out
    }

    #[test]
    fn v8_boxes_are_thresholded_suppressed_per_class_and_mapped_to_the_frame() {
        // A 160×120 frame in a 320×256 input: scale 2, 8 rows of border top and bottom.
        let lb = Letterbox::fit(160, 120, 320, 256);
        let out = v8_output(
            2,
            &[
                (100.0, 68.0, 40.0, 40.0, 0, 0.9),  // frame (40, 20, 20, 20)
                (104.0, 72.0, 40.0, 40.0, 0, 0.8),  // IoU 0.68 with the first: suppressed
                (100.0, 68.0, 40.0, 40.0, 1, 0.85), // another class: kept
                (200.0, 100.0, 20.0, 20.0, 1, 0.2), // below the threshold
                (320.0, 233.0, 40.0, 50.0, 1, 0.7), // past the corner: clipped
                (160.0, 4.0, 20.0, 8.0, 0, 0.95),   // all in the top border: dropped
            ],
        );
        let layout = Layout::detect(&[1, 6, 6], Some(2), None, LayoutChoice::Yolov8).unwrap();
        let found = decode(
            &out,
            &layout,
            &SETTINGS,
            &lb,
            (160, 120),
            &names(&["a", "b"]),
        );
        let got: Vec<_> = found
            .iter()
            .map(|d| (d.class.as_str(), (d.confidence * 100.0).round(), d.bbox))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", 90.0, rect(40, 20, 20, 20)),
                ("b", 85.0, rect(40, 20, 20, 20)),
                ("b", 70.0, rect(150, 100, 10, 20)),
            ]
        );
        let loose = DecodeSettings {
            iou: 0.7,
            max_detections: 2,
            ..SETTINGS
        };
        let found = decode(&out, &layout, &loose, &lb, (160, 120), &names(&["a", "b"]));
        assert_eq!(found.len(), 2, "max_detections");
        assert_eq!(
            found[0].confidence,
            f64::from(0.9f32),
            "the border box took no place"
        );
        let loose = DecodeSettings {
            iou: 0.7,
            ..SETTINGS
        };
        let found = decode(&out, &layout, &loose, &lb, (160, 120), &names(&["a", "b"]));
        assert_eq!(found.len(), 4, "IoU 0.68 ≤ 0.7 keeps the second box");
    }

    #[test]
    fn v5_scores_are_objectness_times_class() {
        let lb = Letterbox::fit(320, 256, 320, 256);
        #[rustfmt::skip]
        let out = [
            50.0, 50.0, 20.0, 20.0, 0.9, 0.8, 0.1,  // 0.72, class 0
            50.0, 50.0, 20.0, 20.0, 0.2, 0.9, 0.9,  // objectness below threshold
            150.0, 50.0, 20.0, 20.0, 0.95, 0.05, 0.5, // 0.475, class 1
            250.0, 50.0, 20.0, 20.0, 0.5, 0.4, 0.1, // 0.2: below
        ];
        let layout = Layout::detect(&[1, 4, 7], Some(2), None, LayoutChoice::Auto).unwrap();
        let found = decode(
            &out,
            &layout,
            &SETTINGS,
            &lb,
            (320, 256),
            &names(&["x", "y"]),
        );
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].class.as_str(), found[0].bbox),
            ("x", rect(40, 40, 20, 20))
        );
        assert!((found[0].confidence - 0.72).abs() < 1e-6);
        assert!((found[1].confidence - 0.475).abs() < 1e-6);
    }

    #[test]
    fn end2end_rows_are_kept_as_the_model_gave_them() {
        let lb = Letterbox::fit(320, 256, 320, 256);
        #[rustfmt::skip]
        let out = [
            10.0, 10.0, 50.0, 50.0, 0.9, 2.0,
            11.0, 11.0, 51.0, 51.0, 0.6, 2.0, // overlapping: the model's NMS kept it
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            f32::NAN, 0.0, 1.0, 1.0, 0.9, 0.0, // not finite: skipped
        ];
        let layout = Layout::detect(&[1, 4, 6], Some(3), Some(true), LayoutChoice::Auto).unwrap();
        let found = decode(
            &out,
            &layout,
            &SETTINGS,
            &lb,
            (320, 256),
            &names(&["a", "b"]),
        );
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].class, "class2", "a class beyond the names");
        assert_eq!(found[1].bbox, rect(11, 11, 40, 40));
    }

    #[test]
    fn nms_caps_and_orders() {
        let boxes: Vec<Candidate> = (0..10)
            .map(|i| Candidate {
                x1: i as f32 * 100.0,
                y1: 0.0,
                x2: i as f32 * 100.0 + 10.0,
                y2: 10.0,
                score: 1.0 - i as f32 * 0.05,
                class: 0,
            })
            .collect();
        assert_eq!(nms(&boxes, 0.45, 3).len(), 3);
        let same = [boxes[0], boxes[0]];
        assert_eq!(nms(&same, 0.45, 10).len(), 1);
        assert_eq!(iou(&boxes[0], &boxes[1]), 0.0);
    }
}
