//! `chitti-agent inspect` as a user runs it: the real binary on the real fixtures.

use chitti_test_support::fixture;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn inspect(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chitti-agent"))
        .arg("inspect")
        .args(args)
        .output()
        .expect("run chitti-agent")
}

fn inspect_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = inspect(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// A failed run prints exactly one line on stderr, containing `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line, got: {stderr}"
    );
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

#[test]
fn json_has_the_documented_fields() {
    let path = fixture("flir_t640_png.jpg");
    let v = inspect_json(&[
        path.to_str().unwrap(),
        "--pixel",
        "320,240",
        "--pixel",
        "10,10",
    ]);
    for key in [
        "file",
        "camera",
        "captured_at",
        "width",
        "height",
        "frames",
        "params",
        "min_c",
        "max_c",
        "mean_c",
        "pixels",
        "hotspots",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["camera"]["model"], "FLIR T640");
    assert_eq!(v["camera"]["serial"], "55908724");
    assert_eq!(v["captured_at"], "2020-11-10T10:39:48.232+00:00");
    assert_eq!(
        (
            v["width"].as_u64(),
            v["height"].as_u64(),
            v["frames"].as_u64()
        ),
        (Some(640), Some(480), Some(1))
    );
    // Reference (exiftool+thermimage): centre (row 240, col 320) 34.4453 °C, (10, 10) 35.6071 °C.
    let px = v["pixels"].as_array().unwrap();
    assert_eq!(
        (px[0]["x"].as_u64(), px[0]["y"].as_u64()),
        (Some(320), Some(240))
    );
    assert!((px[0]["c"].as_f64().unwrap() - 34.4453).abs() < 0.01);
    assert!((px[1]["c"].as_f64().unwrap() - 35.6071).abs() < 0.01);
    assert!((v["max_c"].as_f64().unwrap() - 97.8539).abs() < 0.01);
    let params = &v["params"];
    for key in [
        "emissivity",
        "object_distance_m",
        "reflected_c",
        "atmosphere_c",
        "relative_humidity",
        "planck_r1",
        "planck_o",
        "atm_x",
    ] {
        assert!(params[key].is_number(), "params.{key}");
    }
    let hot = &v["hotspots"][0];
    assert_eq!(
        hot["max_at"],
        serde_json::json!([v["max_at"][0], v["max_at"][1]])
    );
    assert!(hot["bbox"].as_array().unwrap().len() == 4 && hot["area_px"].as_u64().unwrap() >= 4);
    assert_eq!(hot["severity"]["table"], "utility-absolute");
    assert_eq!(hot["severity"]["level"], 3, "97.9 °C is at or above 74 °C");
    assert!(hot["severity"]["action"]
        .as_str()
        .unwrap()
        .contains("immediately"));
}

#[test]
fn pixel_is_column_then_row() {
    // Portrait FLIR ONE: 240 wide, 320 high. (x=200, y=300) exists; (x=300, y=200) does not.
    let path = fixture("flir_one_png_portrait.jpg");
    let v = inspect_json(&[path.to_str().unwrap(), "--pixel", "200,300"]);
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(240), Some(320))
    );
    let out = inspect(&[path.to_str().unwrap(), "--pixel", "300,200"]);
    assert_one_line_error(&out, "pixel 300,200 is outside the 240x320 image");
}

#[test]
fn frame_selects_a_sequence_frame() {
    let path = fixture("flir_t1030sc_8frames_jpegls.csq");
    // reference.json frames[2]: min 15.6804, max 35.3586; frames[7] (the short one): max 35.3388.
    let v = inspect_json(&[path.to_str().unwrap(), "--frame", "2"]);
    assert_eq!(
        (v["frames"].as_u64(), v["frame"].as_u64()),
        (Some(8), Some(2))
    );
    assert!((v["min_c"].as_f64().unwrap() - 15.6804).abs() < 0.01);
    assert!((v["max_c"].as_f64().unwrap() - 35.3586).abs() < 0.01);
    let v = inspect_json(&[path.to_str().unwrap(), "--frame", "7"]);
    assert!((v["max_c"].as_f64().unwrap() - 35.3388).abs() < 0.01);
    assert!(v["warnings"][0]
        .as_str()
        .unwrap()
        .contains("past the end of the file"));
    let out = inspect(&[path.to_str().unwrap(), "--frame", "8"]);
    assert_one_line_error(&out, "frame 8 does not exist: the file has 8 frame(s)");
}

#[test]
fn overrides_change_the_temperatures_and_are_reported() {
    let path = fixture("flir_t640_png.jpg");
    let base = inspect_json(&[path.to_str().unwrap()]);
    let corrected = inspect_json(&[
        path.to_str().unwrap(),
        "--emissivity",
        "0.7",
        "--distance",
        "5",
        "--reflected",
        "-5",
        "--atmosphere",
        "30",
        "--humidity",
        "80",
    ]);
    let p = &corrected["params"];
    assert_eq!(p["emissivity"], 0.7);
    assert_eq!(p["object_distance_m"], 5.0);
    assert_eq!(p["reflected_c"], -5.0);
    assert_eq!(p["atmosphere_c"], 30.0);
    assert!((p["relative_humidity"].as_f64().unwrap() - 0.8).abs() < 1e-12);
    assert_eq!(corrected["overridden"].as_array().unwrap().len(), 5);
    // Lower emissivity with a cold surrounding: the hot object must be hotter than it looked.
    assert!(corrected["max_c"].as_f64().unwrap() > base["max_c"].as_f64().unwrap() + 5.0);
}

#[test]
fn severity_tables_and_references() {
    let path = fixture("flir_t640_png.jpg");
    let p = path.to_str().unwrap();
    // ΔT over a healthy sibling at 40 °C: the 97.9 °C hotspot is a major discrepancy.
    let v = inspect_json(&[
        p,
        "--table",
        "neta-similar",
        "--reference",
        "40",
        "--reference-kind",
        "similar",
    ]);
    let s = &v["hotspots"][0]["severity"];
    assert_eq!(
        (s["table"].as_str(), s["level"].as_u64()),
        (Some("neta-similar"), Some(3))
    );
    assert!((s["inputs"]["delta_c"].as_f64().unwrap() - (97.8539 - 40.0)).abs() < 0.01);
    // The default threshold is the reference plus the first bound (ΔT ≥ 1 °C).
    assert!((v["threshold_c"].as_f64().unwrap() - 41.0).abs() < 1e-9);
    // neta-similar without a similar-component reference is not assessed, not guessed.
    let v = inspect_json(&[p, "--table", "neta-similar"]);
    assert!(v["hotspots"][0]["severity"]["not_assessed"].is_string());
    // A cool exception: against a sibling at 60 °C, the 25 °C background regions are far colder.
    let v = inspect_json(&[
        p,
        "--table",
        "neta-similar",
        "--reference",
        "60",
        "--reference-kind",
        "similar",
    ]);
    let cool = v["cool_exceptions"].as_array().unwrap();
    assert!(!cool.is_empty());
    assert!(cool
        .iter()
        .all(|c| c["severity"]["cool_exception"] == true && c["min_c"].as_f64().unwrap() <= 50.0));
}

#[test]
fn user_severity_tables_from_toml() {
    let dir = std::env::temp_dir().join(format!("chitti-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tables = dir.join("tables.toml");
    std::fs::write(
        &tables,
        "version = 1\n[[table]]\nid = \"acme\"\nversion = 2\ntitle = \"ACME\"\nbasis = \"absolute\"\n\
         [[table.level]]\nname = \"warm\"\nfrom_c = 90\naction = \"look\"\n",
    )
    .unwrap();
    let path = fixture("flir_t640_png.jpg");
    let v = inspect_json(&[
        path.to_str().unwrap(),
        "--tables",
        tables.to_str().unwrap(),
        "--table",
        "acme",
    ]);
    assert_eq!(v["severity_table"]["id"], "acme");
    assert_eq!(v["threshold_c"], 90.0);
    assert_eq!(v["hotspots"][0]["severity"]["level_name"], "warm");
    std::fs::write(
        &tables,
        "version = 1\n[[table]]\nid = \"Bad Id\"\nversion = 0\n",
    )
    .unwrap();
    let out = inspect(&[path.to_str().unwrap(), "--tables", tables.to_str().unwrap()]);
    assert_one_line_error(&out, "tables.toml");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn render_writes_a_png_with_a_scale_bar() {
    let dir = std::env::temp_dir().join(format!("chitti-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_png = dir.join("t640.png");
    let path = fixture("flir_t640_png.jpg");
    let v = inspect_json(&[
        path.to_str().unwrap(),
        "--render",
        out_png.to_str().unwrap(),
        "--palette",
        "rainbow",
    ]);
    assert_eq!(v["render"], out_png.to_str().unwrap());
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&out_png).unwrap(),
    ));
    let info = decoder.read_info().unwrap().info().clone();
    assert_eq!(info.height, 480);
    assert!(
        info.width > 640,
        "scale bar to the right of the 640-px image"
    );
    let out = inspect(&[path.to_str().unwrap(), "--render", "/nonexistent-dir/x.png"]);
    assert_one_line_error(&out, "cannot write /nonexistent-dir/x.png");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn human_summary_names_what_matters() {
    let path = fixture("flir_ex320_png_bigendian.jpg");
    let out = inspect(&[path.to_str().unwrap(), "--pixel", "160,120"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ThermaCAM EX320"), "{text}");
    assert!(text.contains("max 37.19 °C"), "{text}");
    assert!(text.contains("pixel       (160, 120): 32.12 °C"), "{text}");
    assert!(text.contains("level 1 attention"), "{text}");
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let missing = inspect(&["/no/such/file.jpg"]);
    assert_one_line_error(&missing, "cannot open /no/such/file.jpg");
    let not_flir = fixture("reference.json");
    assert_one_line_error(
        &inspect(&[not_flir.to_str().unwrap()]),
        "not a FLIR radiometric file",
    );
    let t640 = fixture("flir_t640_png.jpg");
    let p = t640.to_str().unwrap();
    assert_one_line_error(
        &inspect(&[p, "--table", "nope"]),
        "unknown severity table \"nope\"",
    );
    assert_one_line_error(&inspect(&[p, "--humidity", "150"]), "--humidity 150");
    assert_one_line_error(&inspect(&[p, "--emissivity", "1.5"]), "emissivity = 1.5");
    assert_one_line_error(&inspect(&[p, "--frame", "1"]), "frame 1 does not exist");
    // A directory is not a file.
    let dir = fixture("");
    assert!(!inspect(&[dir.to_str().unwrap()]).status.success());
    // A JPEG without FLIR data.
    let tmp = std::env::temp_dir().join(format!("plain-{}.jpg", std::process::id()));
    std::fs::write(&tmp, [0xFF, 0xD8, 0xFF, 0xD9]).unwrap();
    assert_one_line_error(&inspect(&[tmp.to_str().unwrap()]), "no FLIR APP1 segment");
    std::fs::remove_file(&tmp).unwrap();
}

#[test]
fn a_bad_configuration_lists_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "version = 1\nfoo = 1\n[identity]\nsite = \"Bad Site\"\ngateway = \"g\"\n[[camera]]\nid = \"c\"\n[camera.source]\nkind = \"simulated\"\nfps = -1\n[mqtt]\nurl = \"tcp://x\"\n",
    )
    .unwrap();
    for args in [vec!["validate", "--offline"], vec!["run", "--config"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chitti-agent"))
            .args(&args)
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for expected in [
            "foo: unknown key",
            "identity.site:",
            "camera[0].source.fps:",
            "mqtt.url:",
        ] {
            assert!(
                stderr.contains(expected),
                "{args:?}: {expected} missing in {stderr}"
            );
        }
    }
}

#[test]
fn print_default_config_prints_a_valid_configuration() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chitti-agent"))
        .arg("print-default-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("default.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chitti-agent"))
        .args(["validate", "--offline"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("valid (site demo-site, gateway gw-01, 1 camera(s))"));
}

#[test]
fn keygen_writes_a_private_key_and_prints_its_public_half() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chitti-agent"))
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8(out.stdout).unwrap();
    let public = public.trim();
    assert_eq!(public.len(), 64);
    let signing = chitti_agent::config::read_signing_key(&key).unwrap();
    assert_eq!(
        chitti_common::signing::public_key_hex(&signing.verifying_key()),
        public
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Never overwrites an existing key.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_chitti-agent"))
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("cannot write"));
}

#[test]
fn json_always_has_the_quality_verdict_and_components_only_with_a_model() {
    let path = fixture("flir_t640_png.jpg");
    let v = inspect_json(&[path.to_str().unwrap()]);
    assert_eq!(v["quality"]["quantitative"], true, "{}", v["quality"]);
    assert_eq!(v["quality"]["reasons"], serde_json::json!([]));
    assert!(v["quality"]["measures"]["edge_sharpness"].is_number());
    assert!(v.get("components").is_none(), "no --model, no components");
    let summary = String::from_utf8(inspect(&[path.to_str().unwrap()]).stdout).unwrap();
    assert!(summary.contains("quality     quantitative"), "{summary}");
}

#[test]
fn a_missing_model_is_a_clear_error_naming_it() {
    let path = fixture("flir_t640_png.jpg");
    let out = inspect(&[
        path.to_str().unwrap(),
        "--model",
        "/nonexistent/detector.onnx",
        "--json",
    ]);
    // With the library found (ORT_DYLIB_PATH) the file is named; without it, the library.
    let needle = if std::env::var_os("ORT_DYLIB_PATH").is_some() {
        "model file /nonexistent/detector.onnx is unreadable"
    } else {
        "no onnx runtime library"
    };
    assert_one_line_error(&out, needle);
}

/// Temperature-linear stream evidence (a camera that outputs kelvin × 100): 160×120 at
/// 20.00 °C with a 10×10 patch at 70.00 °C, under Planck parameters that would read
/// very different temperatures if `kelvin_per_count` were ignored.
fn temperature_linear_evidence(dir: &std::path::Path) -> PathBuf {
    use chitti_common::evidence::{encode_radiometric_png, RadiometricPngMeta};
    use chitti_common::image::RawFrame;
    let (w, h) = (160u32, 120u32);
    let counts = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            if (70..80).contains(&x) && (50..60).contains(&y) {
                34_315 // 343.15 K
            } else {
                29_315 // 293.15 K
            }
        })
        .collect();
    let raw = RawFrame::new(w, h, counts).unwrap();
    let meta = RadiometricPngMeta {
        version: 1,
        camera: "lwir-1".into(),
        captured_at: chrono::DateTime::parse_from_rfc3339("2026-12-01T02:00:00+00:00").unwrap(),
        params: chitti_agent::config::nominal_camera_params(),
        saturated_max_c: Some(150.0),
        kelvin_per_count: Some(0.01),
    };
    let path = dir.join("linear.png");
    std::fs::write(&path, encode_radiometric_png(&raw, &meta).unwrap()).unwrap();
    path
}

#[test]
fn temperature_linear_evidence_reads_in_kelvin_per_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = temperature_linear_evidence(dir.path());
    let v = inspect_json(&[path.to_str().unwrap(), "--pixel", "75,55", "--pixel", "5,5"]);
    assert_eq!(v["container"], "evidence-png");
    assert!((v["max_c"].as_f64().unwrap() - 70.0).abs() < 1e-6, "{v}");
    assert!((v["min_c"].as_f64().unwrap() - 20.0).abs() < 1e-6, "{v}");
    assert!((v["pixels"][0]["c"].as_f64().unwrap() - 70.0).abs() < 1e-6);
    assert!((v["pixels"][1]["c"].as_f64().unwrap() - 20.0).abs() < 1e-6);
    // The camera applied its object parameters: a thermographer's emissivity cannot
    // change temperature-linear counts.
    let corrected = inspect_json(&[path.to_str().unwrap(), "--emissivity", "0.5"]);
    assert_eq!(corrected["max_c"], v["max_c"]);
}
