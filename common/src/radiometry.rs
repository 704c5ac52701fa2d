//! Raw detector counts ↔ degrees Celsius, exactly as Thermimage's `raw2temp` and
//! `temp2raw` (the formula every open-source FLIR reader agrees on; see
//! `shared/thermal/FLIR-FORMAT.md` §6).
//!
//! The model: the camera sees the object's radiance attenuated by two half-paths of
//! atmosphere (transmission τ1 = τ2 from FLIR's α1/α2/β1/β2/X humidity model, over
//! `distance / 2` each), an external IR window half-way (transmission `IRT`, window
//! reflectivity 0), plus reflected radiance from the surroundings weighted by
//! `1 − emissivity`. Every constant comes from the file's CameraInfo record; nothing is
//! hard-coded (the E54 uses α1 = α2 = 0, X = 0.732, unlike the "classic" values).
//!
//! All maths is in `f64`. For whole frames, [`CelsiusLut`] evaluates the formula once
//! per distinct raw value in the frame's range, then maps pixels through the table.
//!
//! - **Validation** reports every bad parameter at once (0 < E ≤ 1, 0 < IRT ≤ 1, RH a
//!   fraction, R1, R2, B > 0, …). R1, R2, B > 0 also make the mapping increasing, which
//!   the raw-domain hotspot threshold relies on.
//! - **Physical floor**: a raw value whose signal makes the logarithm's argument ≤ 1 has
//!   no temperature (dead pixels, wrong parameters): a single value is
//!   `Celsius::BelowFloor`; a frame clamps such pixels to the coldest valid temperature
//!   of its range and counts them ([`ConversionReport`]), so no NaN leaves the thermal
//!   core.

use crate::image::{RawFrame, TemperatureImage};
use serde::{Deserialize, Serialize};

/// 0 °C in Kelvin. FLIR stores temperatures in Kelvin; some readers use 273.14 (wrong).
pub const KELVIN_OFFSET: f64 = 273.15;

/// Every parameter that turns raw counts into °C for one frame.
///
/// Temperatures are °C, humidity is a fraction (0.5 = 50 %), distance in metres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RadiometricParams {
    /// Object emissivity, 0 < E ≤ 1.
    pub emissivity: f64,
    /// Distance from camera to object, metres.
    pub object_distance_m: f64,
    /// Reflected apparent temperature, °C.
    pub reflected_c: f64,
    /// Atmospheric temperature, °C.
    pub atmosphere_c: f64,
    /// External IR window temperature, °C.
    pub ir_window_c: f64,
    /// External IR window transmission, 0 < IRT ≤ 1 (1 = no window).
    pub ir_window_transmission: f64,
    /// Relative humidity as a fraction, 0 ≤ RH ≤ 1.
    pub relative_humidity: f64,
    /// Planck constant R1.
    pub planck_r1: f64,
    /// Planck constant R2.
    pub planck_r2: f64,
    /// Planck constant B.
    pub planck_b: f64,
    /// Planck constant F.
    pub planck_f: f64,
    /// Planck offset O (counts).
    pub planck_o: f64,
    /// Atmospheric transmission α1.
    pub atm_alpha1: f64,
    /// Atmospheric transmission α2.
    pub atm_alpha2: f64,
    /// Atmospheric transmission β1.
    pub atm_beta1: f64,
    /// Atmospheric transmission β2.
    pub atm_beta2: f64,
    /// Atmospheric transmission mixing factor X.
    pub atm_x: f64,
}

/// Corrections a thermographer applies after the fact; `None` keeps the file's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamOverrides {
    /// Object emissivity, 0 < E ≤ 1.
    pub emissivity: Option<f64>,
    /// Object distance in metres.
    pub object_distance_m: Option<f64>,
    /// Reflected apparent temperature, °C.
    pub reflected_c: Option<f64>,
    /// Atmospheric temperature, °C.
    pub atmosphere_c: Option<f64>,
    /// Relative humidity as a fraction (0.5 = 50 %).
    pub relative_humidity: Option<f64>,
}

impl ParamOverrides {
    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A parameter is outside the range where the formula means anything.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("radiometric parameter {name} = {value} is invalid: {expected}")]
pub struct InvalidParam {
    /// Parameter name as in [`RadiometricParams`].
    pub name: &'static str,
    /// The offending value.
    pub value: f64,
    /// What was expected.
    pub expected: &'static str,
}

impl RadiometricParams {
    /// The same parameters with the overrides applied.
    pub fn with_overrides(mut self, o: &ParamOverrides) -> Self {
        if let Some(v) = o.emissivity {
            self.emissivity = v;
        }
        if let Some(v) = o.object_distance_m {
            self.object_distance_m = v;
        }
        if let Some(v) = o.reflected_c {
            self.reflected_c = v;
        }
        if let Some(v) = o.atmosphere_c {
            self.atmosphere_c = v;
        }
        if let Some(v) = o.relative_humidity {
            self.relative_humidity = v;
        }
        self
    }

    /// Checks every parameter; returns all problems, not just the first.
    pub fn validate(&self) -> Result<(), Vec<InvalidParam>> {
        let mut errors = Vec::new();
        let mut check = |name, value: f64, ok: bool, expected| {
            if !ok || !value.is_finite() {
                errors.push(InvalidParam {
                    name,
                    value,
                    expected,
                });
            }
        };
        let e = self.emissivity;
        check("emissivity", e, e > 0.0 && e <= 1.0, "0 < E <= 1");
        let d = self.object_distance_m;
        check("object_distance_m", d, d >= 0.0, ">= 0 m");
        for (name, v) in [
            ("reflected_c", self.reflected_c),
            ("atmosphere_c", self.atmosphere_c),
            ("ir_window_c", self.ir_window_c),
        ] {
            check(name, v, v > -KELVIN_OFFSET, "above absolute zero");
        }
        let t = self.ir_window_transmission;
        check(
            "ir_window_transmission",
            t,
            t > 0.0 && t <= 1.0,
            "0 < IRT <= 1",
        );
        let rh = self.relative_humidity;
        check(
            "relative_humidity",
            rh,
            (0.0..=1.0).contains(&rh),
            "a fraction 0..=1",
        );
        check("planck_r1", self.planck_r1, self.planck_r1 > 0.0, "> 0");
        check("planck_r2", self.planck_r2, self.planck_r2 > 0.0, "> 0");
        check("planck_b", self.planck_b, self.planck_b > 0.0, "> 0");
        check("planck_f", self.planck_f, self.planck_f >= 0.0, ">= 0");
        for (name, v) in [
            ("planck_o", self.planck_o),
            ("atm_alpha1", self.atm_alpha1),
            ("atm_alpha2", self.atm_alpha2),
            ("atm_beta1", self.atm_beta1),
            ("atm_beta2", self.atm_beta2),
            ("atm_x", self.atm_x),
        ] {
            check(name, v, true, "a finite number");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Raw signal a black body at `celsius` produces (the Planck curve, no atmosphere).
    fn planck_raw(&self, celsius: f64) -> f64 {
        self.planck_r1
            / (self.planck_r2 * ((self.planck_b / (celsius + KELVIN_OFFSET)).exp() - self.planck_f))
            - self.planck_o
    }

    /// Atmospheric transmission over half the object distance (τ1 = τ2).
    pub fn atmospheric_transmission(&self) -> f64 {
        let ta = self.atmosphere_c;
        let h2o = self.relative_humidity
            * (1.5587 + 0.06939 * ta - 0.00027816 * ta * ta + 0.00000068455 * ta * ta * ta).exp();
        let half_path = (self.object_distance_m / 2.0).sqrt();
        let sqrt_h2o = h2o.sqrt();
        self.atm_x * (-half_path * (self.atm_alpha1 + self.atm_beta1 * sqrt_h2o)).exp()
            + (1.0 - self.atm_x)
                * (-half_path * (self.atm_alpha2 + self.atm_beta2 * sqrt_h2o)).exp()
    }
}

/// The per-frame constants of the formula, computed once: the object signal is
/// `raw · gain + offset`, and `°C = B / ln(R1 / (R2 · signal) + F) − 273.15`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawToCelsius {
    params: RadiometricParams,
    gain: f64,
    offset: f64,
    /// Temperature-linear counts (kelvin = count × this) instead of the Planck curve.
    kelvin_per_count: Option<f64>,
}

/// Result of converting one raw value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Celsius {
    /// A physically meaningful temperature.
    Valid(f64),
    /// The raw value is below the floor where the formula has a real solution (the
    /// logarithm's argument would be ≤ 1); happens for dead pixels or wrong parameters.
    BelowFloor,
}

impl RawToCelsius {
    /// Precomputes the formula's constants; fails when a parameter is invalid.
    pub fn new(params: RadiometricParams) -> Result<Self, Vec<InvalidParam>> {
        params.validate()?;
        let p = &params;
        let e = p.emissivity;
        let irt = p.ir_window_transmission;
        let tau1 = p.atmospheric_transmission();
        let tau2 = tau1;
        let raw_refl = p.planck_raw(p.reflected_c);
        let raw_atm = p.planck_raw(p.atmosphere_c);
        let raw_wind = p.planck_raw(p.ir_window_c);
        let emiss_wind = 1.0 - irt;
        let refl_wind = 0.0;
        // Same terms and order as Thermimage raw2temp.R, so results match to the last bits.
        let refl1_attn = (1.0 - e) / e * raw_refl;
        let atm1_attn = (1.0 - tau1) / e / tau1 * raw_atm;
        let wind_attn = emiss_wind / e / tau1 / irt * raw_wind;
        let refl2_attn = refl_wind / e / tau1 / irt * raw_refl;
        let atm2_attn = (1.0 - tau2) / e / tau1 / irt / tau2 * raw_atm;
        let gain = 1.0 / e / tau1 / irt / tau2;
        let offset = -atm1_attn - atm2_attn - wind_attn - refl1_attn - refl2_attn;
        if !(gain.is_finite() && gain > 0.0 && offset.is_finite()) {
            return Err(vec![InvalidParam {
                name: "atmospheric_transmission",
                value: tau1,
                expected: "parameters giving a finite, positive transmission",
            }]);
        }
        Ok(Self {
            params,
            gain,
            offset,
            kelvin_per_count: None,
        })
    }

    /// A converter for temperature-linear counts (kelvin = count × `kelvin_per_count`,
    /// as some radiometric streams deliver them: the camera has already applied its
    /// calibration and object parameters). `params` records those parameters.
    pub fn temperature_linear(
        kelvin_per_count: f64,
        params: RadiometricParams,
    ) -> Result<Self, Vec<InvalidParam>> {
        if !(kelvin_per_count.is_finite() && kelvin_per_count > 0.0) {
            return Err(vec![InvalidParam {
                name: "kelvin_per_count",
                value: kelvin_per_count,
                expected: "a positive number of kelvin per count",
            }]);
        }
        Ok(Self {
            params,
            gain: 1.0,
            offset: 0.0,
            kelvin_per_count: Some(kelvin_per_count),
        })
    }

    /// Kelvin per count when this is a temperature-linear converter.
    pub fn kelvin_per_count(&self) -> Option<f64> {
        self.kelvin_per_count
    }

    /// The parameters in use.
    pub fn params(&self) -> &RadiometricParams {
        &self.params
    }

    /// Converts one raw value (Thermimage `raw2temp`, or the linear scale).
    pub fn celsius(&self, raw: f64) -> Celsius {
        if let Some(k) = self.kelvin_per_count {
            return if raw >= 0.0 && raw.is_finite() {
                Celsius::Valid(raw * k - KELVIN_OFFSET)
            } else {
                Celsius::BelowFloor
            };
        }
        let p = &self.params;
        let object_signal = raw * self.gain + self.offset;
        let arg = p.planck_r1 / (p.planck_r2 * (object_signal + p.planck_o)) + p.planck_f;
        // ln(arg) must be positive for a temperature above absolute zero; this also
        // rejects a negative or zero signal (arg ≤ F) and NaN.
        if object_signal + p.planck_o > 0.0 && arg > 1.0 && arg.is_finite() {
            Celsius::Valid(p.planck_b / arg.ln() - KELVIN_OFFSET)
        } else {
            Celsius::BelowFloor
        }
    }

    /// Converts one raw value, `NaN` below the floor. For tests and formula checks;
    /// frame conversion clamps instead (see [`CelsiusLut`]).
    pub fn celsius_or_nan(&self, raw: f64) -> f64 {
        match self.celsius(raw) {
            Celsius::Valid(c) => c,
            Celsius::BelowFloor => f64::NAN,
        }
    }

    /// The raw value an object at `celsius` produces (Thermimage `temp2raw`), exact
    /// inverse of [`Self::celsius`]; not rounded.
    pub fn raw(&self, celsius: f64) -> f64 {
        if let Some(k) = self.kelvin_per_count {
            return (celsius + KELVIN_OFFSET) / k;
        }
        let object_signal = self.params.planck_raw(celsius);
        (object_signal - self.offset) / self.gain
    }

    /// Smallest raw count whose temperature is at least `celsius`, or `None` when even
    /// the largest count (65535) is colder. Thresholds are applied in the raw domain
    /// with this: `raw >= threshold_raw ⇔ °C >= threshold` (the mapping is monotonic).
    pub fn min_raw_at_or_above(&self, celsius: f64) -> Option<u16> {
        let at_least =
            |r: u16| matches!(self.celsius(f64::from(r)), Celsius::Valid(c) if c >= celsius);
        if !at_least(u16::MAX) {
            return None;
        }
        let guess = self.raw(celsius);
        let mut r = if guess.is_finite() {
            guess.ceil().clamp(0.0, 65535.0) as u16
        } else {
            0
        };
        // The closed-form inverse lands within a count; walk to the exact boundary so
        // rounding can never move a pixel across the threshold.
        while !at_least(r) {
            r += 1; // terminates: at_least(u16::MAX) holds
        }
        while r > 0 && at_least(r - 1) {
            r -= 1;
        }
        Some(r)
    }

    /// Largest raw count whose temperature is at most `celsius` (for cold regions), or
    /// `None` when even the smallest valid count is warmer.
    pub fn max_raw_at_or_below(&self, celsius: f64) -> Option<u16> {
        match self.min_raw_at_or_above(celsius) {
            Some(r) => {
                let exact = matches!(self.celsius(f64::from(r)), Celsius::Valid(c) if c <= celsius);
                if exact {
                    Some(r)
                } else {
                    r.checked_sub(1)
                }
            }
            None => Some(u16::MAX),
        }
    }
}

/// Counts of pixels whose temperature could not be computed as such.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionReport {
    /// Pixels below the physical floor of the formula, clamped to the coldest valid
    /// temperature of the frame's range instead of producing NaN.
    pub clamped_below_floor_px: u64,
}

/// A raw → °C lookup table over a contiguous range of raw values, built once per
/// parameter set (and range). Invalid entries hold the coldest valid temperature.
#[derive(Debug, Clone)]
pub struct CelsiusLut {
    first_raw: u16,
    celsius: Vec<f32>,
    /// First raw value in the table that is physically valid.
    floor_raw: Option<u16>,
}

impl CelsiusLut {
    /// A table for every raw value 0..=65535 (256 KiB): for streams, where the same
    /// parameters hold frame after frame.
    pub fn full(converter: &RawToCelsius) -> Self {
        Self::for_range(converter, 0, u16::MAX)
    }

    /// A table for raw values `lo..=hi` only: for a single file, where building the
    /// full table would cost more than the conversion itself.
    pub fn for_range(converter: &RawToCelsius, lo: u16, hi: u16) -> Self {
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        let mut celsius = Vec::with_capacity(usize::from(hi - lo) + 1);
        let mut floor_raw = None;
        for r in lo..=hi {
            match converter.celsius(f64::from(r)) {
                Celsius::Valid(c) => {
                    if floor_raw.is_none() {
                        floor_raw = Some(r);
                    }
                    celsius.push(c as f32);
                }
                Celsius::BelowFloor => celsius.push(f32::NAN),
            }
        }
        // Clamp: values below the floor take the coldest valid temperature. When the
        // whole range is invalid, -273.15 °C marks it unmistakably without NaN.
        let fill = floor_raw
            .map(|r| celsius[usize::from(r - lo)])
            .unwrap_or(-KELVIN_OFFSET as f32);
        for c in celsius.iter_mut().filter(|c| c.is_nan()) {
            *c = fill;
        }
        Self {
            first_raw: lo,
            celsius,
            floor_raw,
        }
    }

    /// The table's temperature for one raw value; values outside the table's range are
    /// clamped to its ends.
    pub fn lookup(&self, raw: u16) -> f32 {
        let i = usize::from(raw.saturating_sub(self.first_raw)).min(self.celsius.len() - 1);
        self.celsius[i]
    }

    /// Converts a whole frame.
    pub fn convert(&self, frame: &RawFrame) -> (TemperatureImage, ConversionReport) {
        let counts = frame.counts();
        let table = &self.celsius[..];
        let first = self.first_raw;
        let last = table.len() - 1;
        let celsius: Vec<f32> = counts
            .iter()
            .map(|&r| table[usize::from(r.saturating_sub(first)).min(last)])
            .collect();
        let clamped = match self.floor_raw {
            Some(floor) if floor > first => counts.iter().filter(|&&r| r < floor).count() as u64,
            Some(_) => 0,
            None => counts.len() as u64,
        };
        let image = TemperatureImage::new(frame.width(), frame.height(), celsius)
            .expect("a converted frame has the frame's shape"); // same length by construction
        (
            image,
            ConversionReport {
                clamped_below_floor_px: clamped,
            },
        )
    }
}

/// Converts a frame with a table over exactly its raw range: the fast path for files.
pub fn frame_to_celsius(
    converter: &RawToCelsius,
    frame: &RawFrame,
) -> (TemperatureImage, ConversionReport) {
    let (lo, hi) = frame.min_max();
    CelsiusLut::for_range(converter, lo, hi).convert(frame)
}

#[cfg(test)]
mod linear_tests {
    use super::*;

    #[test]
    fn temperature_linear_counts_map_and_invert_exactly() {
        let params = RadiometricParams {
            emissivity: 1.0,
            object_distance_m: 1.0,
            reflected_c: 20.0,
            atmosphere_c: 20.0,
            ir_window_c: 20.0,
            ir_window_transmission: 1.0,
            relative_humidity: 0.5,
            planck_r1: 1.0,
            planck_r2: 1.0,
            planck_b: 1.0,
            planck_f: 1.0,
            planck_o: 0.0,
            atm_alpha1: 0.0,
            atm_alpha2: 0.0,
            atm_beta1: 0.0,
            atm_beta2: 0.0,
            atm_x: 0.0,
        };
        let c = RawToCelsius::temperature_linear(0.01, params).unwrap();
        // 30000 counts × 0.01 K = 300 K = 26.85 °C.
        assert!((c.celsius_or_nan(30000.0) - 26.85).abs() < 1e-9);
        assert_eq!(c.min_raw_at_or_above(26.85), Some(30000));
        assert_eq!(c.min_raw_at_or_above(26.851), Some(30001));
        assert!(RawToCelsius::temperature_linear(0.0, params).is_err());
        assert!(RawToCelsius::temperature_linear(f64::NAN, params).is_err());
    }
}
