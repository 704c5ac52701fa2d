//! The 60 raw → °C cases of `formula_vectors.json` (Thermimage `raw2temp`, float64)
//! within 1e-6 °C, and the inverse (`temp2raw`) round trip.

use chitti_common::radiometry::{RadiometricParams, RawToCelsius};
use serde_json::Value;

fn params(p: &Value) -> RadiometricParams {
    let f = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("param {k}"));
    RadiometricParams {
        emissivity: f("E"),
        object_distance_m: f("OD"),
        reflected_c: f("RTemp"),
        atmosphere_c: f("ATemp"),
        ir_window_c: f("IRWTemp"),
        ir_window_transmission: f("IRT"),
        relative_humidity: f("RH"),
        planck_r1: f("PR1"),
        planck_r2: f("PR2"),
        planck_b: f("PB"),
        planck_f: f("PF"),
        planck_o: f("PO"),
        atm_alpha1: f("ATA1"),
        atm_alpha2: f("ATA2"),
        atm_beta1: f("ATB1"),
        atm_beta2: f("ATB2"),
        atm_x: f("ATX"),
    }
}

#[test]
fn all_formula_vectors_within_a_microkelvin() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/flir/formula_vectors.json"
    );
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 60);
    let mut worst = 0f64;
    for (i, case) in cases.iter().enumerate() {
        let converter = RawToCelsius::new(params(&case["params"])).unwrap();
        let raw = case["raw"].as_f64().unwrap();
        let want = case["temp_C"].as_f64().unwrap();
        let got = converter.celsius_or_nan(raw);
        assert!(
            (got - want).abs() <= 1e-6,
            "case {i} ({}): raw {raw} → {got}, want {want}",
            case["sample"]
        );
        worst = worst.max((got - want).abs());
        // The inverse recovers the raw value.
        let back = converter.raw(got);
        let want_back = case["temp2raw_roundtrip"].as_f64().unwrap();
        assert!(
            (back - want_back).abs() <= 1e-6,
            "case {i}: temp2raw {back}, want {want_back}"
        );
        assert!(
            (back - raw).abs() <= 1e-6,
            "case {i}: round trip {raw} → {got} → {back}"
        );
        // Thresholds in the raw domain are exact at integer counts.
        let r = converter.min_raw_at_or_above(got).unwrap();
        assert_eq!(
            f64::from(r),
            raw,
            "case {i}: smallest raw at or above {got} °C"
        );
    }
    println!("worst |Δ| over 60 formula vectors: {worst:.3e} °C");
}
