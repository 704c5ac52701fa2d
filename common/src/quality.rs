//! The image-quality gate: is a frame fit for *measurement*, or only for looking at?
//!
//! Run on every frame before its findings are scored. A frame that fails is
//! **qualitative**: its hotspots are still found and reported (a missed hotspot is a
//! fire), but every severity assessment of it carries `qualitative: true` and its findings
//! carry the [`ImageQuality`] that says why, so nobody files a blurred or saturated
//! reading as a measured temperature. The level is kept as *indicative* (blur and
//! saturation read peaks low). The assessment's `qualitative` and `Finding.quality` are
//! `#[serde(default)]` and omitted when false or absent, so older payloads parse and
//! quantitative findings serialise exactly as before the gate existed.
//!
//! # Checks and their defaults ([`QualityOptions`])
//! - **Blurred** ([`QualityCode::Blurred`]): the *edge sharpness* of the °C image — the
//!   k-th strongest pixel gradient (k = max(16, pixels / 1000), so a handful of noisy
//!   pixels cannot pass a frame) divided by the scene's contrast (99th − 1st percentile,
//!   °C) — below [`QualityOptions::min_edge_sharpness`] (0.07). A focused step edge
//!   changes by most of its height from one pixel to the next (sharpness ≈ 0.3–1); a
//!   Gaussian blur of σ pixels spreads it, to ≈ 0.26 at σ 1.4, 0.11 at σ 3.5, 0.07 at
//!   σ 6.5 and 0.05 at σ 10 (measured on the unit tests' scene), so the threshold is a blur
//!   of about six pixels. The softest real fixture (the T1030sc sequence, then the
//!   FLIR ONE) measures 0.144, twice the threshold. Contrast is in the
//!   denominator so the measure does not depend on the scene's temperatures. A scene of
//!   less than [`QualityOptions::min_contrast_c`] (2 °C) contrast has no edge to judge
//!   focus by and is never called blurred (its sharpness is `None`).
//! - **Saturated** ([`QualityCode::Saturated`]): more than
//!   [`QualityOptions::max_saturated_fraction`] (0.5 %) of the pixels at or above the
//!   camera's saturation limit (`CameraTemperatureMaxSaturated`; the count the analysis
//!   already makes in the raw domain, with the camera's own parameters). Their true
//!   temperature may be anywhere above the limit, so every max °C near them is a lower
//!   bound. The cold saturation limit is not checked: a clear sky below it does not spoil
//!   the measurement of the equipment in front of it.
//! - **Out of the calibrated range** ([`QualityCode::OutOfRange`]): more than
//!   [`QualityOptions::max_out_of_range_fraction`] (50 %, "mostly") of the pixels above the
//!   top of the camera's selected measurement range (`CameraTemperatureRangeMax`) or below
//!   its clip limit (`CameraTemperatureMinClip`, else `CameraTemperatureRangeMin`): the
//!   wrong range for the scene. The cold end is the clip limit because cameras read sky and
//!   snow below the calibrated low end routinely without spoiling the equipment in front
//!   (the winter T440 fixture has 57 % of its pixels below its −20 °C range minimum). Only
//!   for frames that declare their range (files; streams do not).
//! - **Non-radiometric** ([`QualityCode::NonRadiometric`]): the frame has no radiometric
//!   parameters (rendered video): nothing in it is a temperature. [`ImageQuality::non_radiometric`].
//!
//! Every real FLIR fixture in `tests/fixtures/flir` passes all four as quantitative
//! (tested in `common/tests/quality_fixtures.rs`, which also prints their sharpness).
//!
//! Pure: a function of the image and of counts the caller made.

use crate::image::TemperatureImage;
use serde::{Deserialize, Serialize};

/// Thresholds of the quality gate. The defaults are documented in the module header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityOptions {
    /// Lowest edge sharpness (strong-edge gradient ÷ scene contrast) of a focused frame.
    pub min_edge_sharpness: f64,
    /// Scenes with less contrast than this, °C, are not judged for blur.
    pub min_contrast_c: f64,
    /// Largest fraction (0..1) of pixels at the saturation limit of a measurable frame.
    pub max_saturated_fraction: f64,
    /// Largest fraction (0..1) of pixels outside the calibrated range of a measurable frame.
    pub max_out_of_range_fraction: f64,
}

impl Default for QualityOptions {
    fn default() -> Self {
        Self {
            min_edge_sharpness: 0.07,
            min_contrast_c: 2.0,
            max_saturated_fraction: 0.005,
            max_out_of_range_fraction: 0.5,
        }
    }
}

/// Why a frame is not quantitative: the machine name of a failed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum QualityCode {
    /// Out of focus or motion-smeared: peaks are spread and read low.
    Blurred,
    /// Too many pixels at the detector's saturation limit: maxima are lower bounds.
    Saturated,
    /// Most pixels outside the camera's calibrated measurement range.
    OutOfRange,
    /// No radiometric parameters: not a temperature image at all.
    NonRadiometric,
}

/// One failed check: its machine name and a sentence for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QualityReason {
    /// The check that failed.
    pub code: QualityCode,
    /// What was measured against what, in words.
    pub message: String,
}

/// The verdict of the quality gate on one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageQuality {
    /// True when every check passed: temperatures may be read as measurements.
    pub quantitative: bool,
    /// The checks that failed (empty when quantitative).
    pub reasons: Vec<QualityReason>,
    /// The figures the checks compared.
    #[serde(default)]
    pub measures: QualityMeasures,
}

/// The figures behind an [`ImageQuality`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct QualityMeasures {
    /// Edge sharpness (see the module documentation); `None` when not judged.
    pub edge_sharpness: Option<f64>,
    /// Scene contrast: 99th − 1st percentile, °C.
    pub contrast_c: Option<f64>,
    /// Fraction of pixels at or above the saturation limit.
    pub saturated_fraction: f64,
    /// Fraction of pixels outside the calibrated range; `None` when the frame declares none.
    pub out_of_range_fraction: Option<f64>,
}

impl ImageQuality {
    /// The verdict on a frame with no radiometric parameters.
    pub fn non_radiometric() -> Self {
        Self {
            quantitative: false,
            reasons: vec![QualityReason {
                code: QualityCode::NonRadiometric,
                message:
                    "the frame has no radiometric parameters: its pixel values are not temperatures"
                        .to_owned(),
            }],
            measures: QualityMeasures::default(),
        }
    }

    /// Whether a check with this code failed.
    pub fn has(&self, code: QualityCode) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }
}

/// What the caller counted in the raw domain (with the camera's own parameters, as the
/// limits are the detector's whatever emissivity the user corrects to).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SensorCounts {
    /// Pixels at or above the saturation limit.
    pub saturated_px: u64,
    /// Pixels outside the calibrated range; `None` when the frame declares no range.
    pub out_of_range_px: Option<u64>,
}

/// Runs the gate on a radiometric frame.
pub fn assess_quality(
    image: &TemperatureImage,
    sensor: &SensorCounts,
    options: &QualityOptions,
) -> ImageQuality {
    let pixels = image.celsius().len().max(1) as f64;
    let contrast_c = contrast_c(image);
    let edge_sharpness = contrast_c
        .filter(|&c| c >= options.min_contrast_c)
        .and_then(|c| strong_gradient_c(image).map(|g| g / c));
    let measures = QualityMeasures {
        edge_sharpness,
        contrast_c,
        saturated_fraction: sensor.saturated_px as f64 / pixels,
        out_of_range_fraction: sensor.out_of_range_px.map(|n| n as f64 / pixels),
    };
    let mut reasons = Vec::new();
    if let Some(s) = measures.edge_sharpness {
        if s < options.min_edge_sharpness {
            reasons.push(QualityReason {
                code: QualityCode::Blurred,
                message: format!(
                    "the image is blurred: edge sharpness {s:.3} is below {:.3} (strongest edges change by {:.1} % of the {:.1} °C scene contrast per pixel)",
                    options.min_edge_sharpness,
                    s * 100.0,
                    contrast_c.unwrap_or(f64::NAN)
                ),
            });
        }
    }
    if measures.saturated_fraction > options.max_saturated_fraction {
        reasons.push(QualityReason {
            code: QualityCode::Saturated,
            message: format!(
                "{:.2} % of the pixels ({}) are at the camera's saturation limit (at most {:.2} % allowed): their true temperatures may be higher",
                measures.saturated_fraction * 100.0,
                sensor.saturated_px,
                options.max_saturated_fraction * 100.0
            ),
        });
    }
    if let Some(f) = measures.out_of_range_fraction {
        if f > options.max_out_of_range_fraction {
            reasons.push(QualityReason {
                code: QualityCode::OutOfRange,
                message: format!(
                    "{:.1} % of the pixels are outside the camera's calibrated measurement range (at most {:.1} % allowed)",
                    f * 100.0,
                    options.max_out_of_range_fraction * 100.0
                ),
            });
        }
    }
    ImageQuality {
        quantitative: reasons.is_empty(),
        reasons,
        measures,
    }
}

/// 99th − 1st percentile of the finite pixels, °C; `None` for an image without finite
/// pixels.
fn contrast_c(image: &TemperatureImage) -> Option<f64> {
    let mut values: Vec<f32> = image
        .celsius()
        .iter()
        .copied()
        .filter(|c| c.is_finite())
        .collect();
    if values.is_empty() {
        return None;
    }
    let hi = percentile(&mut values, 0.99);
    let lo = percentile(&mut values, 0.01);
    Some(f64::from(hi) - f64::from(lo))
}

/// The value at fraction `q` (0..=1) of the sorted order; reorders `values`.
fn percentile(values: &mut [f32], q: f64) -> f32 {
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    *values.select_nth_unstable_by(index, f32::total_cmp).1
}

/// The k-th largest forward-difference gradient magnitude, °C per pixel, k =
/// max(16, pixels / 1000); `None` for an image too small to have gradients.
fn strong_gradient_c(image: &TemperatureImage) -> Option<f64> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w < 2 || h < 2 {
        return None;
    }
    let c = image.celsius();
    let mut gradients = Vec::with_capacity((w - 1) * (h - 1));
    for y in 0..h - 1 {
        let row = &c[y * w..(y + 1) * w];
        let below = &c[(y + 1) * w..(y + 2) * w];
        for x in 0..w - 1 {
            let dx = row[x + 1] - row[x];
            let dy = below[x] - row[x];
            let g = (dx * dx + dy * dy).sqrt();
            if g.is_finite() {
                gradients.push(g);
            }
        }
    }
    if gradients.is_empty() {
        return None;
    }
    let k = (gradients.len() / 1000).max(16).min(gradients.len());
    let index = gradients.len() - k;
    Some(f64::from(
        *gradients.select_nth_unstable_by(index, f32::total_cmp).1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 120×90 scene: three 16×40 "phases" at 45 °C on a 20 °C background, with a
    /// little deterministic texture so no two pixels are alike.
    fn scene() -> Vec<f32> {
        let (w, h) = (120usize, 90usize);
        let mut c = vec![20.0f32; w * h];
        for (i, v) in c.iter_mut().enumerate() {
            let (x, y) = (i % w, i / w);
            *v += ((x * 7 + y * 13) % 10) as f32 * 0.02;
            for x0 in [20usize, 52, 84] {
                if (x0..x0 + 16).contains(&x) && (25..65).contains(&y) {
                    *v = 45.0;
                }
            }
        }
        c
    }

    fn image(c: Vec<f32>) -> TemperatureImage {
        TemperatureImage::new(120, 90, c).unwrap()
    }

    /// Separable box blur of radius `r`, applied three times (≈ Gaussian, σ ≈ r).
    fn blurred(mut c: Vec<f32>, r: usize) -> Vec<f32> {
        let (w, h) = (120usize, 90usize);
        for _ in 0..3 {
            let mut out = c.clone();
            for y in 0..h {
                for x in 0..w {
                    let (a, b) = (x.saturating_sub(r), (x + r).min(w - 1));
                    out[y * w + x] =
                        (a..=b).map(|i| c[y * w + i]).sum::<f32>() / (b - a + 1) as f32;
                }
            }
            c = out.clone();
            for y in 0..h {
                for x in 0..w {
                    let (a, b) = (y.saturating_sub(r), (y + r).min(h - 1));
                    out[y * w + x] =
                        (a..=b).map(|i| c[i * w + x]).sum::<f32>() / (b - a + 1) as f32;
                }
            }
            c = out;
        }
        c
    }

    #[test]
    fn a_sharp_scene_is_quantitative() {
        let q = assess_quality(
            &image(scene()),
            &SensorCounts::default(),
            &QualityOptions::default(),
        );
        assert!(q.quantitative, "{q:?}");
        assert!(q.measures.edge_sharpness.unwrap() > 0.5, "{q:?}");
    }

    #[test]
    fn a_blurred_scene_is_flagged_blurred() {
        let q = assess_quality(
            &image(blurred(scene(), 8)),
            &SensorCounts::default(),
            &QualityOptions::default(),
        );
        assert!(!q.quantitative);
        assert_eq!(q.reasons.len(), 1, "{q:?}");
        assert_eq!(q.reasons[0].code, QualityCode::Blurred);
        assert!(q.reasons[0].message.contains("blurred"), "{q:?}");
        // A slight softening, as real optics give, still passes.
        let soft = assess_quality(
            &image(blurred(scene(), 1)),
            &SensorCounts::default(),
            &QualityOptions::default(),
        );
        assert!(soft.quantitative, "{soft:?}");
    }

    #[test]
    fn a_flat_scene_is_not_judged_for_blur() {
        let q = assess_quality(
            &image(vec![21.5; 120 * 90]),
            &SensorCounts::default(),
            &QualityOptions::default(),
        );
        assert!(q.quantitative, "{q:?}");
        assert_eq!(q.measures.edge_sharpness, None);
    }

    #[test]
    fn saturated_and_out_of_range_frames_are_flagged_with_their_reasons() {
        let pixels = 120 * 90u64;
        let q = assess_quality(
            &image(scene()),
            &SensorCounts {
                saturated_px: pixels / 50,
                out_of_range_px: Some(pixels * 3 / 4),
            },
            &QualityOptions::default(),
        );
        assert!(!q.quantitative);
        let codes: Vec<QualityCode> = q.reasons.iter().map(|r| r.code).collect();
        assert_eq!(codes, [QualityCode::Saturated, QualityCode::OutOfRange]);
        assert!(q.reasons[0].message.contains("2.00 %"), "{q:?}");
        // At the limits they pass.
        let ok = assess_quality(
            &image(scene()),
            &SensorCounts {
                saturated_px: pixels / 200,
                out_of_range_px: Some(pixels / 2),
            },
            &QualityOptions::default(),
        );
        assert!(ok.quantitative, "{ok:?}");
    }

    #[test]
    fn the_thresholds_are_the_callers() {
        let strict = QualityOptions {
            min_edge_sharpness: 2.0,
            ..QualityOptions::default()
        };
        let q = assess_quality(&image(scene()), &SensorCounts::default(), &strict);
        assert!(q.has(QualityCode::Blurred), "{q:?}");
    }

    #[test]
    fn non_radiometric_is_qualitative_and_serialises_with_machine_names() {
        let q = ImageQuality::non_radiometric();
        assert!(!q.quantitative);
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(json["quantitative"], false);
        assert_eq!(json["reasons"][0]["code"], "non_radiometric");
        let back: ImageQuality = serde_json::from_str(
            r#"{"quantitative":false,"reasons":[{"code":"out_of_range","message":"m"}]}"#,
        )
        .unwrap();
        assert!(back.has(QualityCode::OutOfRange));
    }
}
