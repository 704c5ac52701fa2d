use super::*;
use crate::severity::{ReferenceKind, SeverityCatalog, COOL_EXCEPTION_ACTION};

const W: u32 = 200;
const H: u32 = 120;
const AMBIENT_C: f64 = 20.0;

/// A 200×120 image at ambient with each `(box, °C)` painted in (a bright 3×3 core at
/// +0.5 °C in the middle of each, so the max pixel is well defined).
fn scene(parts: &[(PixelRect, f32)]) -> TemperatureImage {
    let mut c = vec![AMBIENT_C as f32; (W * H) as usize];
    for &(r, t) in parts {
        for y in r.y..r.y + r.h {
            for x in r.x..r.x + r.w {
                c[(y * W + x) as usize] = t;
            }
        }
        let (cx, cy) = (r.x + r.w / 2, r.y + r.h / 2);
        for y in cy - 1..=cy + 1 {
            for x in cx - 1..=cx + 1 {
                c[(y * W + x) as usize] = t + 0.5;
            }
        }
    }
    TemperatureImage::new(W, H, c).unwrap()
}

fn rect(x: u32, y: u32, w: u32, h: u32) -> PixelRect {
    PixelRect { x, y, w, h }
}

fn detected(class: &str, bbox: PixelRect) -> DetectedComponent {
    DetectedComponent {
        class: class.into(),
        confidence: 0.9,
        bbox,
    }
}

fn ambient() -> ReferenceTemperature {
    ReferenceTemperature::ambient(AMBIENT_C, "test ambient")
}

fn tables() -> ComponentTables {
    let table = SeverityCatalog::builtin()
        .get(NETA_AMBIENT)
        .unwrap()
        .clone();
    ComponentTables::for_table(&table)
}

/// Three bushings side by side, slightly ragged as a detector gives them.
fn three_in_a_row() -> [PixelRect; 3] {
    [
        rect(30, 40, 20, 40),
        rect(85, 42, 22, 38),
        rect(140, 39, 20, 41),
    ]
}

fn measure(parts: &[(PixelRect, f32)], class: &str) -> ComponentMeasurement {
    let image = scene(parts);
    let detections: Vec<DetectedComponent> =
        parts.iter().map(|&(r, _)| detected(class, r)).collect();
    measure_components(
        &image,
        &detections,
        &ambient(),
        &tables(),
        &ComponentOptions::default(),
    )
}

#[test]
fn box_statistics_are_the_pixels_inside_the_box() {
    let r = rect(30, 40, 20, 40);
    let m = measure(&[(r, 40.0)], "clamp");
    let c = &m.components[0];
    assert_eq!(c.max_c, 40.5);
    assert_eq!(c.max_at, PixelPoint { x: 39, y: 59 });
    assert_eq!(c.min_c, 40.0);
    assert_eq!(c.area_px, 800);
    let mean = (791.0 * 40.0 + 9.0 * 40.5) / 800.0;
    assert!((c.mean_c - mean).abs() < 1e-9, "{}", c.mean_c);
    assert_eq!(c.delta_t_ambient_c, 20.5);
}

#[test]
fn one_phase_20_degrees_hotter_is_a_major_neta_similar_discrepancy_naming_its_reference() {
    let [a, b, c] = three_in_a_row();
    let m = measure(&[(a, 40.0), (b, 60.0), (c, 40.0)], "bushing");
    assert_eq!(m.groups.len(), 1, "{m:#?}");
    let group = &m.groups[0];
    assert_eq!(group.axis, GroupAxis::Row);
    assert_eq!(group.members, [0, 1, 2]);
    assert_eq!(
        group.reference, 0,
        "the coolest loaded member, first on ties"
    );

    let hot = &m.components[1];
    let phase = hot.phase.as_ref().unwrap();
    assert_eq!(phase.label, "bushing #2 of 3 (middle)");
    assert!(!phase.reference);
    let similar = hot.similar.as_ref().unwrap();
    assert_eq!(similar.reference_label, "bushing #1 of 3 (left)");
    assert_eq!(similar.delta_t_similar_c, 20.0);
    let s = &hot.severity;
    assert_eq!(s.table, NETA_SIMILAR);
    assert_eq!((s.level, s.level_name.as_str()), (3, "major discrepancy"));
    assert_eq!(
        s.inputs.reference_kind,
        Some(ReferenceKind::SimilarComponent)
    );
    assert_eq!(
        s.inputs.reference_source.as_deref(),
        Some("bushing #1 of 3 (left)")
    );

    // The other healthy phase compares equal; the reference is measured against ambient.
    let right = &m.components[2];
    assert_eq!(right.similar.as_ref().unwrap().delta_t_similar_c, 0.0);
    assert_eq!(right.severity.level, 0);
    let left = &m.components[0];
    assert!(left.phase.as_ref().unwrap().reference);
    assert_eq!(left.similar, None);
    assert_eq!(left.severity.table, NETA_AMBIENT);

    // Only the hot phase is a reportable comparison.
    let regions = m.comparison_regions();
    assert_eq!(regions.len(), 1);
    assert_eq!(regions[0].1.hotspot.bbox, b);
    assert_eq!(regions[0].1.hotspot.max_c, 60.5);
    assert_eq!(
        m.component_of(&regions[0].1).unwrap().bbox,
        b,
        "a comparison region belongs to its own component"
    );
}

#[test]
fn the_reference_is_the_coolest_phase_wherever_it_is() {
    let [a, b, c] = three_in_a_row();
    let m = measure(&[(a, 48.0), (b, 45.0), (c, 47.0)], "clamp");
    assert_eq!(m.groups[0].reference, 1);
    let left = m.components[0].similar.as_ref().unwrap();
    assert_eq!(left.reference_label, "clamp #2 of 3 (middle)");
    assert_eq!(left.delta_t_similar_c, 3.0);
    // NETA: 1–3 °C is a possible deficiency (3.0 still belongs to that row).
    assert_eq!(m.components[0].severity.level, 1);
    assert_eq!(m.components[2].severity.level, 1);
}

#[test]
fn a_phase_at_ambient_while_its_siblings_are_loaded_is_the_cool_exception() {
    let [a, b, c] = three_in_a_row();
    let m = measure(&[(a, 45.0), (b, 45.0), (c, 20.0)], "bushing");
    let cold = &m.components[2];
    assert_eq!(
        m.groups[0].reference, 0,
        "the unloaded phase is never the baseline"
    );
    let s = &cold.severity;
    assert!(s.cool_exception, "{s:?}");
    assert_eq!(s.level, 0);
    assert_eq!(s.action, COOL_EXCEPTION_ACTION);
    assert_eq!(
        s.inputs.reference_source.as_deref(),
        Some("bushing #1 of 3 (left)")
    );
    assert_eq!(s.inputs.delta_c, Some(20.5 - 45.5));
    // The loaded sibling is not flagged against the cold one.
    assert_eq!(m.components[1].severity.level, 0);
    let regions = m.comparison_regions();
    assert_eq!(regions.len(), 1);
    assert_eq!(regions[0].1.hotspot.bbox, c);
    assert_eq!(
        m.component_of(&regions[0].1).unwrap().bbox,
        c,
        "the cool exception belongs to the cold phase"
    );
}

#[test]
fn an_open_phase_short_of_the_cool_exception_step_is_still_not_the_baseline() {
    // C rose 1.5 °C while A and B rose 11: unloaded, although only 9.5 °C colder than
    // them (short of the table's 10 °C cool-exception step). Taking it as the baseline
    // would flag both loaded phases as deficiencies.
    let [a, b, c] = three_in_a_row();
    let m = measure(&[(a, 31.0), (b, 31.0), (c, 21.5)], "bushing");
    assert_ne!(
        m.groups[0].reference, 2,
        "the open phase is not the baseline"
    );
    // The loaded sibling that is not the baseline shows no imbalance (the baseline
    // itself is read against ambient).
    for loaded in &m.components[..2] {
        if loaded.severity.table == NETA_SIMILAR {
            assert_eq!(loaded.severity.level, 0, "{:?}", loaded.severity);
        }
    }
    let cold = &m.components[2].severity;
    assert!(
        !cold.cool_exception,
        "9.5 °C is short of the 10 °C step: {cold:?}"
    );
    assert!(cold.inputs.delta_c.unwrap() < -9.0, "{cold:?}");
}

#[test]
fn of_two_loaded_phases_the_hotter_is_the_deficiency_not_the_cooler_a_cool_exception() {
    let [a, b, _] = three_in_a_row();
    let m = measure(&[(a, 40.0), (b, 60.0)], "clamp");
    assert_eq!(m.groups.len(), 1);
    assert_eq!(m.components[1].severity.level, 3);
    assert_eq!(
        m.components[1].phase.as_ref().unwrap().label,
        "clamp #2 of 2 (right)"
    );
    assert!(!m.components[0].severity.cool_exception);
    assert_eq!(m.comparison_regions().len(), 1);
}

#[test]
fn components_not_in_a_line_form_no_group_and_are_assessed_over_ambient() {
    // Same class and size, but on a diagonal.
    let parts = [
        (rect(10, 5, 20, 30), 40.0),
        (rect(80, 45, 20, 30), 65.0),
        (rect(150, 85, 20, 30), 40.0),
    ];
    let m = measure(&parts, "insulator");
    assert!(m.groups.is_empty(), "{:?}", m.groups);
    let hot = &m.components[1];
    assert_eq!(hot.phase, None);
    assert_eq!(hot.similar, None);
    assert_eq!(hot.severity.table, NETA_AMBIENT);
    assert_eq!(
        hot.severity.inputs.reference_kind,
        Some(ReferenceKind::Ambient)
    );
    // ΔT 45.5 over ambient: NETA "major discrepancy" (> 40).
    assert_eq!(hot.severity.level, 4);
    assert!(m.comparison_regions().is_empty());
}

#[test]
fn unlike_sizes_classes_or_four_in_a_line_form_no_group() {
    let [a, b, c] = three_in_a_row();
    // One box twice as tall.
    let tall = rect(b.x, 20, b.w, 80);
    let m = measure(&[(a, 40.0), (tall, 60.0), (c, 40.0)], "bushing");
    assert!(
        m.groups.iter().all(|g| !g.members.contains(&1)),
        "the odd-sized one is in no group: {:?}",
        m.groups
    );
    assert!(m.components[1].similar.is_none());
    // Three classes.
    let image = scene(&[(a, 40.0), (b, 60.0), (c, 40.0)]);
    let mixed = [
        detected("bushing", a),
        detected("clamp", b),
        detected("breaker", c),
    ];
    let m = measure_components(
        &image,
        &mixed,
        &ambient(),
        &tables(),
        &ComponentOptions::default(),
    );
    assert!(m.groups.is_empty());
    // Four in a row: two circuits, or a bus; not phases.
    let four: Vec<(PixelRect, f32)> = (0..4)
        .map(|i| (rect(10 + i * 45, 40, 20, 40), 40.0))
        .collect();
    assert!(measure(&four, "insulator").groups.is_empty());
    // Too far apart (another bay).
    assert!(measure(
        &[(rect(5, 40, 12, 30), 40.0), (rect(180, 40, 12, 30), 60.0)],
        "clamp"
    )
    .groups
    .is_empty());
}

#[test]
fn a_column_is_a_group_too_named_top_to_bottom() {
    let parts = [
        (rect(90, 5, 30, 20), 30.0),
        (rect(92, 45, 28, 20), 30.0),
        (rect(89, 85, 30, 20), 52.0),
    ];
    let m = measure(&parts, "ct_pt");
    assert_eq!(m.groups.len(), 1);
    assert_eq!(m.groups[0].axis, GroupAxis::Column);
    let hot = &m.components[2];
    assert_eq!(hot.phase.as_ref().unwrap().label, "ct_pt #3 of 3 (bottom)");
    assert_eq!(
        hot.similar.as_ref().unwrap().reference_label,
        "ct_pt #1 of 3 (top)"
    );
    assert_eq!(hot.severity.level, 3);
}

#[test]
fn two_rows_of_three_are_two_groups() {
    let top: Vec<(PixelRect, f32)> = (0..3)
        .map(|i| (rect(20 + i * 60, 10, 20, 30), 40.0))
        .collect();
    let mut parts = top.clone();
    parts.extend((0..3).map(|i| {
        (
            rect(20 + i * 60, 75, 20, 30),
            if i == 2 { 50.0 } else { 40.0 },
        )
    }));
    let m = measure(&parts, "bushing");
    assert_eq!(m.groups.len(), 2, "{:?}", m.groups);
    assert!(m.groups.iter().all(|g| g.axis == GroupAxis::Row));
    assert_eq!(m.comparison_regions().len(), 1);
    assert_eq!(m.comparison_regions()[0].0.component.bbox, parts[5].0);
}

#[test]
fn boxes_are_clipped_to_the_image_and_those_outside_left_out() {
    let image = scene(&[]);
    let m = measure_components(
        &image,
        &[
            detected("clamp", rect(190, 110, 50, 50)),
            detected("clamp", rect(500, 10, 5, 5)),
        ],
        &ambient(),
        &tables(),
        &ComponentOptions::default(),
    );
    assert_eq!(m.components.len(), 1);
    assert_eq!(m.outside_image, 1);
    assert_eq!(m.components[0].component.bbox, rect(190, 110, 10, 10));
    assert_eq!(m.components[0].area_px, 100);
}

#[test]
fn a_camera_table_that_needs_a_sibling_measures_lone_components_over_ambient() {
    let similar = SeverityCatalog::builtin()
        .get(NETA_SIMILAR)
        .unwrap()
        .clone();
    let t = ComponentTables::for_table(&similar);
    assert_eq!(
        (t.similar.id.as_str(), t.ambient.id.as_str()),
        (NETA_SIMILAR, NETA_AMBIENT)
    );
    let absolute = SeverityCatalog::builtin()
        .get("utility-absolute")
        .unwrap()
        .clone();
    let t = ComponentTables::for_table(&absolute);
    assert_eq!(
        (t.similar.id.as_str(), t.ambient.id.as_str()),
        (NETA_SIMILAR, "utility-absolute")
    );
    let tuv = SeverityCatalog::builtin().get("tuv").unwrap().clone();
    let t = ComponentTables::for_table(&tuv);
    assert_eq!(
        (t.similar.id.as_str(), t.ambient.id.as_str()),
        ("tuv", "tuv")
    );
}

#[test]
fn qualitative_frames_flag_every_component_assessment() {
    let [a, b, c] = three_in_a_row();
    let mut m = measure(&[(a, 40.0), (b, 60.0), (c, 40.0)], "bushing");
    m.mark_qualitative();
    assert!(m.components.iter().all(|c| c.severity.qualitative));
    assert_eq!(
        m.components[1].severity.level, 3,
        "the level is kept, as indicative"
    );
}
