//! What a component detector sees: a °C image mapped to `0..=1` and letterboxed into the
//! model's input size.
//!
//! One definition for everything that feeds a model: the agent's ONNX runtime, the
//! `synth` training-data writer (which stores exactly this unit image beside each frame)
//! and therefore the training scripts in `models/`. A model trained on other inputs sees
//! a different world; keeping the mapping here is what keeps training and deployment
//! alike.
//!
//! - **Unit image**: per frame, `lo` = the 1st and `hi` = the 99.5th percentile of the
//!   °C values; each pixel becomes `clamp((t − lo) / (hi − lo), 0, 1)`, with `hi − lo`
//!   at least [`MIN_SPAN_C`]. Percentiles rather than min/max so that one hot speck or a
//!   dead pixel does not flatten the whole scene; per frame so that ambient and
//!   emissivity changes move the scale, not the picture. Ultralytics-trained models
//!   expect `0..=1` inputs too, so a user's own model gets what it was trained on.
//! - **Letterbox**: the unit image scaled (bilinear, aspect kept) to fit the model's
//!   input and centred, the border filled with [`PAD_VALUE`] (114/255, Ultralytics'
//!   grey); [`Letterbox::to_source`] maps model pixels back to frame pixels.

use crate::image::TemperatureImage;

/// The smallest `hi − lo` span of the unit mapping, °C: a flat scene stays flat
/// instead of having its noise stretched to full contrast.
pub const MIN_SPAN_C: f32 = 1.0;

/// Lower percentile of the unit mapping.
pub const LOW_PERCENTILE: f64 = 1.0;

/// Upper percentile of the unit mapping.
pub const HIGH_PERCENTILE: f64 = 99.5;

/// The letterbox border, in unit-image values (114/255).
pub const PAD_VALUE: f32 = 114.0 / 255.0;

/// A °C image mapped to `0..=1`, row-major, same size as its source.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major values in `0..=1`.
    pub values: Vec<f32>,
    /// °C mapped to 0.
    pub lo_c: f32,
    /// °C mapped to 1.
    pub hi_c: f32,
}

/// Maps `image` to the unit image every detector input is made from.
pub fn unit_image(image: &TemperatureImage) -> UnitImage {
    let celsius = image.celsius();
    let (lo, hi) = match percentiles(celsius, [LOW_PERCENTILE, HIGH_PERCENTILE]) {
        None => (0.0, MIN_SPAN_C),
        Some([lo, hi]) => (lo, hi.max(lo + MIN_SPAN_C)),
    };
    let span = hi - lo;
    let values = celsius
        .iter()
        .map(|&t| {
            if t.is_finite() {
                ((t - lo) / span).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    UnitImage {
        width: image.width(),
        height: image.height(),
        values,
        lo_c: lo,
        hi_c: hi,
    }
}

/// Bins of the histogram [`percentiles`] narrows its search with.
const PERCENTILE_BINS: usize = 4096;

/// The `ps` percentiles (nearest rank over the finite values) of `celsius`, exactly as a
/// full sort would give them; `None` when no value is finite.
///
/// A histogram over `min..=max` finds the bin each rank falls in; only that bin's
/// values are then selected among. On a 640×480 frame that is four linear passes instead
/// of copying and partially sorting 307 200 values per percentile, which was most of
/// the detector's pre-processing time.
fn percentiles<const N: usize>(celsius: &[f32], ps: [f64; N]) -> Option<[f32; N]> {
    let (mut min, mut max, mut n) = (f32::INFINITY, f32::NEG_INFINITY, 0usize);
    for &t in celsius.iter().filter(|t| t.is_finite()) {
        min = min.min(t);
        max = max.max(t);
        n += 1;
    }
    if n == 0 {
        return None;
    }
    if min == max {
        return Some([min; N]);
    }
    let scale = PERCENTILE_BINS as f64 / (f64::from(max) - f64::from(min));
    // Monotonic in t, so a bin holds a contiguous run of ranks.
    let bin =
        |t: f32| (((f64::from(t) - f64::from(min)) * scale) as usize).min(PERCENTILE_BINS - 1);
    let mut histogram = vec![0usize; PERCENTILE_BINS];
    for &t in celsius.iter().filter(|t| t.is_finite()) {
        histogram[bin(t)] += 1;
    }
    Some(ps.map(|p| {
        let rank = ((p / 100.0) * (n - 1) as f64).round() as usize;
        let (mut b, mut below) = (0, 0);
        while below + histogram[b] <= rank {
            below += histogram[b];
            b += 1;
        }
        let mut members: Vec<f32> = celsius
            .iter()
            .copied()
            .filter(|&t| t.is_finite() && bin(t) == b)
            .collect();
        let (_, v, _) = members.select_nth_unstable_by(rank - below, |a, b| a.total_cmp(b));
        *v
    }))
}

/// How a frame sits inside a model input: scale, then offset by the padding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Model pixels per frame pixel.
    pub scale: f32,
    /// Left border, model pixels.
    pub pad_x: u32,
    /// Top border, model pixels.
    pub pad_y: u32,
    /// Width of the scaled frame inside the input, model pixels.
    pub inner_width: u32,
    /// Height of the scaled frame inside the input, model pixels.
    pub inner_height: u32,
    /// Model input width.
    pub input_width: u32,
    /// Model input height.
    pub input_height: u32,
}

impl Letterbox {
    /// The letterbox that fits a `src_w`×`src_h` frame into a `dst_w`×`dst_h` input,
    /// aspect kept and centred.
    pub fn fit(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Self {
        let scale = (dst_w as f32 / src_w as f32).min(dst_h as f32 / src_h as f32);
        let inner_width = ((src_w as f32 * scale).round() as u32).clamp(1, dst_w);
        let inner_height = ((src_h as f32 * scale).round() as u32).clamp(1, dst_h);
        Self {
            scale,
            pad_x: (dst_w - inner_width) / 2,
            pad_y: (dst_h - inner_height) / 2,
            inner_width,
            inner_height,
            input_width: dst_w,
            input_height: dst_h,
        }
    }

    /// A model-input point back in frame pixels (not clamped).
    pub fn to_source(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x - self.pad_x as f32) / self.scale,
            (y - self.pad_y as f32) / self.scale,
        )
    }

    /// A frame point in model-input pixels.
    pub fn to_input(&self, x: f32, y: f32) -> (f32, f32) {
        (
            x * self.scale + self.pad_x as f32,
            y * self.scale + self.pad_y as f32,
        )
    }

    /// The model input for `unit`: `channels` planes (the same plane repeated, for
    /// 3-channel models) of `input_height × input_width`, NCHW order without the batch.
    pub fn apply(&self, unit: &UnitImage, channels: usize) -> Vec<f32> {
        let (w, h) = (self.input_width as usize, self.input_height as usize);
        let mut plane = vec![PAD_VALUE; w * h];
        let (sw, sh) = (unit.width as usize, unit.height as usize);
        // Bilinear sampling at pixel centres (OpenCV's INTER_LINEAR convention), the
        // resize Ultralytics trains with.
        let fx = sw as f32 / self.inner_width as f32;
        let fy = sh as f32 / self.inner_height as f32;
        for oy in 0..self.inner_height as usize {
            let sy = ((oy as f32 + 0.5) * fy - 0.5).clamp(0.0, (sh - 1) as f32);
            let y0 = sy.floor() as usize;
            let y1 = (y0 + 1).min(sh - 1);
            let wy = sy - y0 as f32;
            let row = (oy + self.pad_y as usize) * w + self.pad_x as usize;
            for ox in 0..self.inner_width as usize {
                let sx = ((ox as f32 + 0.5) * fx - 0.5).clamp(0.0, (sw - 1) as f32);
                let x0 = sx.floor() as usize;
                let x1 = (x0 + 1).min(sw - 1);
                let wx = sx - x0 as f32;
                let v = |x: usize, y: usize| unit.values[y * sw + x];
                let top = v(x0, y0) * (1.0 - wx) + v(x1, y0) * wx;
                let bottom = v(x0, y1) * (1.0 - wx) + v(x1, y1) * wx;
                plane[row + ox] = top * (1.0 - wy) + bottom * wy;
            }
        }
        if channels <= 1 {
            return plane;
        }
        let mut out = Vec::with_capacity(plane.len() * channels);
        for _ in 0..channels {
            out.extend_from_slice(&plane);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: u32, height: u32, f: impl Fn(u32, u32) -> f32) -> TemperatureImage {
        let celsius = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        TemperatureImage::new(width, height, celsius).unwrap()
    }

    #[test]
    fn unit_image_ignores_a_hot_speck_and_keeps_the_scene_contrast() {
        // A 20..40 °C ramp with one 900 °C pixel: min/max would squash the ramp
        // into 0..0.02; the percentiles keep it spread over 0..1.
        let img = image(200, 100, |x, y| {
            if (x, y) == (5, 5) {
                900.0
            } else {
                20.0 + 20.0 * x as f32 / 199.0
            }
        });
        let unit = unit_image(&img);
        assert!(
            unit.lo_c < 21.0 && unit.hi_c > 39.0 && unit.hi_c < 41.0,
            "{unit:?}"
        );
        assert_eq!(unit.values[5 * 200 + 5], 1.0);
        let mid = unit.values[50 * 200 + 100];
        assert!((mid - 0.5).abs() < 0.05, "mid-ramp maps near 0.5: {mid}");
    }

    /// The nearest-rank percentile by a full sort: what [`percentiles`] must equal.
    fn sorted_percentile(values: &[f32], p: f64) -> f32 {
        let mut v: Vec<f32> = values.iter().copied().filter(|t| t.is_finite()).collect();
        v.sort_by(f32::total_cmp);
        v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
    }

    #[test]
    fn histogram_percentiles_equal_a_full_sort() {
        // A skewed scene with a far outlier, repeated values and a NaN: the cases where
        // a histogram bin holds many values or the rank sits on a bin edge.
        let mut state = 0x9e37_79b9_u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            f64::from(state) / f64::from(u32::MAX)
        };
        let mut values: Vec<f32> = (0..50_000)
            .map(|i| match i % 7 {
                0 => 25.0,
                1 => (20.0 + 30.0 * next().powi(3)) as f32,
                _ => (-5.0 + 60.0 * next()) as f32,
            })
            .collect();
        values[17] = 1500.0;
        values[99] = f32::NAN;
        for p in [0.0, 1.0, 50.0, 99.5, 100.0] {
            assert_eq!(
                percentiles(&values, [p]).unwrap()[0],
                sorted_percentile(&values, p),
                "percentile {p}"
            );
        }
        assert_eq!(percentiles(&[f32::NAN], [1.0]), None);
        assert_eq!(percentiles(&[3.0, 3.0], [1.0, 99.5]), Some([3.0, 3.0]));
    }

    #[test]
    fn flat_scene_stays_flat() {
        let img = image(10, 10, |x, _| 25.0 + 0.01 * x as f32);
        let unit = unit_image(&img);
        assert_eq!(unit.hi_c - unit.lo_c, MIN_SPAN_C);
        assert!(unit.values.iter().all(|&v| v < 0.1));
    }

    #[test]
    fn letterbox_of_a_t560_frame_centres_it_and_maps_back() {
        let lb = Letterbox::fit(640, 480, 320, 256);
        assert_eq!((lb.scale, lb.inner_width, lb.inner_height), (0.5, 320, 240));
        assert_eq!((lb.pad_x, lb.pad_y), (0, 8));
        let (x, y) = lb.to_source(160.0, 8.0);
        assert_eq!((x, y), (320.0, 0.0));
        let (ix, iy) = lb.to_input(640.0, 480.0);
        assert_eq!((ix, iy), (320.0, 248.0));
    }

    #[test]
    fn letterboxed_input_has_grey_borders_and_the_scene_inside() {
        let img = image(64, 32, |x, _| if x < 32 { 10.0 } else { 30.0 });
        let unit = unit_image(&img);
        let lb = Letterbox::fit(64, 32, 32, 32);
        let input = lb.apply(&unit, 3);
        assert_eq!(input.len(), 3 * 32 * 32);
        assert_eq!(input[0], PAD_VALUE, "top border");
        let row = (lb.pad_y as usize + 4) * 32;
        assert_eq!(input[row + 2], 0.0, "cold half");
        assert_eq!(input[row + 29], 1.0, "hot half");
        assert_eq!(&input[..1024], &input[2048..], "channels repeat");
    }
}
