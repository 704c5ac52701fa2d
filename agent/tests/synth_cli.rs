//! `chitti-agent synth` as a user runs it: the real binary writes a training set, the
//! files decode to what the generator drew, and `inspect` reads the evidence it wrote.

use chitti_agent::sources::simulated::scene::{self, CLASS_NAMES};
use chitti_agent::synth::{self, SynthManifest, SynthRequest};
use chitti_common::detector_input::unit_image;
use chitti_common::evidence::decode_radiometric_png;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const W: u32 = 320;
const H: u32 = 240;

fn synth(out: &Path, count: u64, seed: u64) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chitti-agent"))
        .args(["synth", "--out"])
        .arg(out)
        .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
        .args(["--width", &W.to_string(), "--height", &H.to_string()])
        .output()
        .expect("run chitti-agent")
}

fn read_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["images", "inputs", "labels"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for n in names {
            out.push((
                format!("{sub}/{n}"),
                std::fs::read(dir.join(sub).join(&n)).unwrap(),
            ));
        }
    }
    for f in ["classes.txt", "manifest.json", "components.jsonl"] {
        out.push((f.to_string(), std::fs::read(dir.join(f)).unwrap()));
    }
    out
}

#[test]
fn the_binary_writes_the_documented_files_and_the_same_seed_the_same_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [a.path(), b.path()] {
        let out = synth(dir, 3, 42);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tree = read_tree(a.path());
    let names: Vec<&str> = tree.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "images/000000.png",
            "images/000001.png",
            "images/000002.png",
            "inputs/000000.png",
            "inputs/000001.png",
            "inputs/000002.png",
            "labels/000000.txt",
            "labels/000001.txt",
            "labels/000002.txt",
            "classes.txt",
            "manifest.json",
            "components.jsonl"
        ]
    );
    assert_eq!(tree, read_tree(b.path()), "same seed, same bytes");
    let classes = std::fs::read_to_string(a.path().join("classes.txt")).unwrap();
    assert_eq!(classes.lines().collect::<Vec<_>>(), CLASS_NAMES);
    let manifest: SynthManifest =
        serde_json::from_slice(&std::fs::read(a.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        (
            manifest.seed,
            manifest.count,
            manifest.width,
            manifest.height
        ),
        (42, 3, W, H)
    );
    assert_eq!(manifest.generator_version, scene::GENERATOR_VERSION);

    let other = tempfile::tempdir().unwrap();
    assert!(synth(other.path(), 1, 43).status.success());
    assert_ne!(
        std::fs::read(a.path().join("images/000000.png")).unwrap(),
        std::fs::read(other.path().join("images/000000.png")).unwrap(),
        "another seed, another frame"
    );
}

#[test]
fn files_decode_to_the_generated_counts_labels_and_unit_image() {
    let dir = tempfile::tempdir().unwrap();
    let request = SynthRequest {
        out: dir.path().to_path_buf(),
        count: 4,
        seed: 7,
        width: W,
        height: H,
    };
    synth::write_set(&request).unwrap();
    let mut labelled = 0;
    for index in 0..4u64 {
        let frame = scene::generate(7, index, W, H).unwrap();
        let name = format!("{index:06}");
        // Evidence: the same counts and parameters.
        let png = std::fs::read(dir.path().join(format!("images/{name}.png"))).unwrap();
        let (raw, meta) = decode_radiometric_png(&png).unwrap();
        assert_eq!(raw, frame.raw);
        // JSON may move a parameter by one ulp (serde_json parses without exact
        // round-trip); 1e-9 relative is far below any °C effect.
        let (a, b) = (
            serde_json::to_value(meta.params).unwrap(),
            serde_json::to_value(frame.params).unwrap(),
        );
        for (key, x) in a.as_object().unwrap() {
            let (x, y) = (x.as_f64().unwrap(), b[key].as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                "{key}: {x} vs {y}"
            );
        }
        assert_eq!(meta.camera, synth::SYNTH_CAMERA);
        // Labels: one line per component, normalised boxes inside the frame that
        // match the generator's pixel boxes.
        let text = std::fs::read_to_string(dir.path().join(format!("labels/{name}.txt"))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), frame.components.len());
        for (line, c) in lines.iter().zip(&frame.components) {
            let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
            assert_eq!(v[0] as usize, c.class.id());
            for x in &v[1..] {
                assert!((0.0..=1.0).contains(x), "{line}");
            }
            let x0 = (v[1] - v[3] / 2.0) * f64::from(W);
            let y1 = (v[2] + v[4] / 2.0) * f64::from(H);
            assert!((x0 - f64::from(c.bbox[0])).abs() < 0.01, "{line} {c:?}");
            assert!((y1 - f64::from(c.bbox[3])).abs() < 0.01, "{line} {c:?}");
            labelled += 1;
        }
        // Inputs: the unit image of the frame, to 1/65535.
        let unit = unit_image(&frame.temperature);
        let decoder = png::Decoder::new(std::io::Cursor::new(
            std::fs::read(dir.path().join(format!("inputs/{name}.png"))).unwrap(),
        ));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (W, H));
        assert_eq!(info.bit_depth, png::BitDepth::Sixteen);
        for (k, px) in buf[..info.buffer_size()].chunks_exact(2).enumerate() {
            let v = f32::from(u16::from_be_bytes([px[0], px[1]])) / 65535.0;
            assert!(
                (v - unit.values[k]).abs() <= 0.5 / 65535.0 + 1e-7,
                "pixel {k}"
            );
        }
    }
    assert!(labelled > 0, "four frames hold some components");
    let jsonl = std::fs::read_to_string(dir.path().join("components.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 4);
}

#[test]
fn inspect_reads_the_evidence_png_synth_wrote() {
    let dir = tempfile::tempdir().unwrap();
    assert!(synth(dir.path(), 1, 3).status.success());
    let frame = scene::generate(3, 0, W, H).unwrap();
    let path = dir.path().join("images/000000.png");
    let out = Command::new(env!("CARGO_BIN_EXE_chitti-agent"))
        .arg("inspect")
        .arg(&path)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["container"], "evidence-png");
    assert_eq!(v["raw_encoding"], "png");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    let stats = frame.temperature.stats();
    let max_c = v["max_c"].as_f64().unwrap();
    assert!(
        (max_c - stats.max_c).abs() < 0.01,
        "{max_c} vs {}",
        stats.max_c
    );
    assert!((v["params"]["emissivity"].as_f64().unwrap() - frame.params.emissivity).abs() < 1e-9);
    assert_eq!(v["captured_at"], "2026-01-01T00:00:00.000+00:00");

    // A PNG without the radiometry chunk is refused with the reason, in one line.
    let plain = dir.path().join("plain.png");
    let mut bytes = Vec::new();
    {
        let mut e = png::Encoder::new(&mut bytes, 2, 2);
        e.set_color(png::ColorType::Grayscale);
        e.set_depth(png::BitDepth::Sixteen);
        let mut w = e.write_header().unwrap();
        w.write_image_data(&[0; 8]).unwrap();
    }
    std::fs::write(&plain, bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chitti-agent"))
        .arg("inspect")
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("chitti-radiometry"), "{stderr}");
}

#[test]
fn a_zero_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = synth(dir.path(), 0, 1);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--count must be at least 1"));
}
