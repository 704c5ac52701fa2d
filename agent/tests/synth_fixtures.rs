//! The fixed synthetic frames in `tests/fixtures/synth/` (for the detector's tests):
//! each evidence PNG and the expected components in `expected.json` are exactly what
//! the scene generator draws for their specification, so a change to the generator
//! that would move a box fails here rather than silently in a detector test.
//!
//! To rewrite them after a deliberate generator change:
//! `CHITTI_WRITE_FIXTURES=/tmp/inputs cargo test -p chitti-agent --test synth_fixtures`
//! (the folder receives each frame's unit-image input, for checking a model by hand).

use chitti_agent::sources::simulated::scene::{
    generate_rows, ComponentClass, Fault, RowSpec, SynthFrame,
};
use chitti_agent::synth::{evidence_png, input_png};
use serde_json::{json, Value};
use std::path::PathBuf;

const W: u32 = 640;
const H: u32 = 480;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/synth")
}

fn row(
    class: ComponentClass,
    first: (f32, f32),
    spacing: f32,
    height: f32,
    faults: Vec<Fault>,
) -> RowSpec {
    RowSpec {
        class,
        first,
        spacing,
        height,
        rise_c: 10.0,
        faults,
    }
}

/// (file name, seed, ambient °C, rows, what it is for).
fn specs() -> Vec<(&'static str, u64, f32, Vec<RowSpec>, &'static str)> {
    use ComponentClass::*;
    vec![
        (
            "three-bushings-b-hot.png",
            101,
            20.0,
            vec![row(
                Bushing,
                (160.0, 400.0),
                160.0,
                200.0,
                vec![Fault::None, Fault::Hot { rise_c: 20.0 }, Fault::None],
            )],
            "three bushing phases; phase B's terminal 20 °C hotter than A and C: a neta-similar finding naming B, referenced to A or C",
        ),
        (
            "clamps-and-breaker.png",
            102,
            10.0,
            vec![
                row(Clamp, (200.0, 130.0), 120.0, 36.0, vec![Fault::None; 3]),
                row(Breaker, (480.0, 450.0), 0.0, 170.0, vec![Fault::None]),
            ],
            "three healthy clamps on their conductors and one breaker: detections without a fault",
        ),
        (
            "ct-pt-row-c-cold-and-disconnector.png",
            103,
            25.0,
            vec![
                row(
                    CtPt,
                    (140.0, 440.0),
                    150.0,
                    180.0,
                    vec![Fault::None, Fault::None, Fault::Cold],
                ),
                row(Disconnector, (540.0, 200.0), 0.0, 110.0, vec![Fault::None]),
            ],
            "three CT/PT phases with phase C at ambient (no load: a cool exception), and a closed disconnector",
        ),
    ]
}

fn max_c_in(frame: &SynthFrame, b: [u32; 4]) -> f32 {
    let t = frame.temperature.celsius();
    let w = frame.raw.width() as usize;
    (b[1]..b[3])
        .flat_map(|y| (b[0]..b[2]).map(move |x| (x, y)))
        .map(|(x, y)| t[y as usize * w + x as usize])
        .fold(f32::MIN, f32::max)
}

fn expected(frames: &[(&str, SynthFrame, &str)]) -> Value {
    let list: Vec<Value> = frames
        .iter()
        .map(|(name, f, purpose)| {
            let components: Vec<Value> = f
                .components
                .iter()
                .map(|c| {
                    let [x0, y0, x1, y1] = c.bbox;
                    let (fault, rise) = match c.fault {
                        Fault::None => ("none", 0.0),
                        Fault::Hot { rise_c } => ("hot", rise_c),
                        Fault::Cold => ("cold", 0.0),
                    };
                    let phase = ["A", "B", "C"].get(c.phase).copied().unwrap_or("?");
                    json!({
                        "class": c.class.name(),
                        "class_id": c.class.id(),
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "row": c.row,
                        "phase": phase,
                        "fault": fault,
                        "fault_rise_c": rise,
                        "body_c": (f64::from(c.body_c) * 100.0).round() / 100.0,
                        "max_c": (f64::from(max_c_in(f, c.bbox)) * 100.0).round() / 100.0,
                    })
                })
                .collect();
            json!({
                "file": name,
                "purpose": purpose,
                "width": W,
                "height": H,
                "ambient_c": f.ambient_c,
                "components": components,
            })
        })
        .collect();
    json!({
        "about": "Expected components of the fixed synthetic frames (scene::generate_rows). bbox is [x, y, w, h] in frame pixels, x the column; a detector should find each with IoU >= 0.5 and the right class. Regenerate with CHITTI_WRITE_FIXTURES (see agent/tests/synth_fixtures.rs).",
        "generator_version": chitti_agent::sources::simulated::scene::GENERATOR_VERSION,
        "frames": list,
    })
}

#[test]
fn committed_fixtures_are_what_the_generator_draws() {
    let frames: Vec<(&str, SynthFrame, &str)> = specs()
        .into_iter()
        .map(|(name, seed, ambient, rows, purpose)| {
            (
                name,
                generate_rows(seed, W, H, ambient, &rows).unwrap(),
                purpose,
            )
        })
        .collect();
    let want = expected(&frames);
    let dir = fixtures_dir();
    if let Ok(inputs) = std::env::var("CHITTI_WRITE_FIXTURES") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&inputs).unwrap();
        for (name, f, _) in &frames {
            std::fs::write(dir.join(name), evidence_png(f, 0).unwrap()).unwrap();
            std::fs::write(PathBuf::from(&inputs).join(name), input_png(f).unwrap()).unwrap();
        }
        let text = serde_json::to_string_pretty(&want).unwrap() + "\n";
        std::fs::write(dir.join("expected.json"), text).unwrap();
    }
    for (name, f, _) in &frames {
        let committed = std::fs::read(dir.join(name)).unwrap();
        assert!(
            committed == evidence_png(f, 0).unwrap(),
            "{name} differs from what the generator draws"
        );
    }
    let committed: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(committed, want);
    // The fixture the neta-similar test relies on: B hotter than A and C by 20 °C.
    let bushings = &want["frames"][0]["components"];
    let max = |k: usize| bushings[k]["max_c"].as_f64().unwrap();
    assert!((max(1) - max(0) - 20.0).abs() < 2.0, "{bushings}");
    assert!((max(1) - max(2) - 20.0).abs() < 2.0, "{bushings}");
    assert_eq!(bushings[1]["phase"], "B");
}
