//! Black-box: `chitti-agent inspect --json` on every FLIR fixture reproduces the
//! `exiftool+thermimage` reference (`tests/fixtures/flir/reference.json`) to 0.01 °C,
//! for every frame of the sequences too.

use chitti_e2e::{binary, fixture};
use serde_json::Value;
use std::process::Command;

fn inspect(file: &str, extra: &[String]) -> Value {
    let out = Command::new(binary("chitti-agent"))
        .args(["inspect", "--json"])
        .arg(fixture(file))
        .args(extra)
        .output()
        .expect("run chitti-agent");
    assert!(
        out.status.success(),
        "{file}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn every_fixture_through_the_binary_matches_the_reference() {
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("reference.json")).unwrap()).unwrap();
    let samples = reference["samples"].as_object().unwrap();
    let mut failures = Vec::new();
    for (name, sample) in samples {
        let names = ["center", "p10_10", "argmax"];
        let mut args = Vec::new();
        for px in names {
            let rc = &sample["pixels_rc"][px];
            // reference.json is (row, col); --pixel is X,Y = column,row.
            args.push("--pixel".to_string());
            args.push(format!("{},{}", rc[1], rc[0]));
        }
        let v = inspect(name, &args);
        let r = &sample["references"]["exiftool+thermimage"];
        let mut check = |what: &str, got: &Value, want: &Value| {
            let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
            if (g - w).abs() > 0.01 {
                failures.push(format!("{name}: {what} {g} vs reference {w}"));
            }
        };
        check("min_c", &v["min_c"], &r["min_C"]);
        check("max_c", &v["max_c"], &r["max_C"]);
        check("mean_c", &v["mean_c"], &r["mean_C"]);
        for (i, px) in names.iter().enumerate() {
            check(px, &v["pixels"][i]["c"], &r["pixels_C"][px]);
        }
        let frames = sample
            .get("frames")
            .and_then(Value::as_array)
            .map_or(1, Vec::len);
        assert_eq!(v["frames"].as_u64(), Some(frames as u64), "{name}");
        if let Some(frames) = sample.get("frames").and_then(Value::as_array) {
            for (i, want) in frames.iter().enumerate().skip(1) {
                let v = inspect(name, &["--frame".to_string(), i.to_string()]);
                check(&format!("frame {i} min_c"), &v["min_c"], &want["min_C"]);
                check(&format!("frame {i} max_c"), &v["max_c"], &want["max_C"]);
                check(&format!("frame {i} mean_c"), &v["mean_c"], &want["mean_C"]);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
