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
//!
//! [`unit_image`] + [`Letterbox::apply`] is the definition (and what `synth` writes);
//! [`model_input`] is the runtime's fast path to the same values, bit for bit: exact
//! percentiles in one counting pass, and only the sampled rows mapped, a row at a time.

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
    let (lo, hi) = unit_range(celsius);
    let span = hi - lo;
    UnitImage {
        width: image.width(),
        height: image.height(),
        values: celsius.iter().map(|&t| to_unit(t, lo, span)).collect(),
        lo_c: lo,
        hi_c: hi,
    }
}

/// The model input for `image` in `letterbox`: exactly
/// `letterbox.apply(&unit_image(image), channels)`, value for value, but only the source
/// rows the letterbox samples are mapped, a row at a time, and no frame-sized unit image
/// is allocated. This is the agent's per-frame path; [`unit_image`] is what `synth`
/// writes for training.
pub fn model_input(image: &TemperatureImage, letterbox: &Letterbox, channels: usize) -> Vec<f32> {
    let (lo, hi) = unit_range(image.celsius());
    let span = hi - lo;
    letterbox.resample(
        image.celsius(),
        (image.width() as usize, image.height() as usize),
        channels,
        move |t| to_unit(t, lo, span),
    )
}

/// The `lo..=hi` °C range the unit mapping of `celsius` uses: its
/// [`LOW_PERCENTILE`] and [`HIGH_PERCENTILE`], at least [`MIN_SPAN_C`] apart;
/// `(0, MIN_SPAN_C)` when no value is finite.
pub fn unit_range(celsius: &[f32]) -> (f32, f32) {
    match percentiles(celsius, [LOW_PERCENTILE, HIGH_PERCENTILE]) {
        None => (0.0, MIN_SPAN_C),
        Some([lo, hi]) => (lo, hi.max(lo + MIN_SPAN_C)),
    }
}

/// One °C value in the unit mapping; a non-finite value maps to 0.
#[inline]
fn to_unit(t: f32, lo: f32, span: f32) -> f32 {
    // Computed for every value and then selected, without a branch, so that a row maps
    // in vector instructions.
    let unit = ((t - lo) / span).clamp(0.0, 1.0);
    if t.is_finite() {
        unit
    } else {
        0.0
    }
}

/// Values [`percentiles`] draws, evenly spaced, to bracket each rank before its one
/// pass over the frame.
const PERCENTILE_SAMPLE: usize = 2048;

/// The `ps` percentiles (nearest rank over the finite values) of `celsius`, exactly as a
/// full sort would give them; `None` when no value is finite.
fn percentiles<const N: usize>(celsius: &[f32], ps: [f64; N]) -> Option<[f32; N]> {
    percentiles_sampled(celsius, ps, PERCENTILE_SAMPLE)
}

/// [`percentiles`] with `sample` values drawn to bracket the ranks.
///
/// The sample's own percentiles, widened by four standard errors, give for each rank a
/// value bracket `[a, b]` that almost surely holds it. One pass over the frame then
/// counts the finite values (`n`) and those below `a`, and keeps only the values inside
/// `[a, b]` (a few per cent of the frame). When the rank falls inside the kept values,
/// selecting among them gives exactly the value a full sort would; when it does not (a
/// sample that misled), the percentile is selected from all finite values instead. The
/// bracket only decides the speed, never the result. On a 640×480 frame that is one
/// branch-light pass instead of copying and partially sorting 307 200 values per
/// percentile.
fn percentiles_sampled<const N: usize>(
    celsius: &[f32],
    ps: [f64; N],
    sample: usize,
) -> Option<[f32; N]> {
    let rank_of = |p: f64, n: usize| ((p / 100.0) * (n - 1) as f64).round() as usize;
    if celsius.len() < 4 * sample.max(1) {
        let mut finite: Vec<f32> = celsius.iter().copied().filter(|t| t.is_finite()).collect();
        if finite.is_empty() {
            return None;
        }
        let n = finite.len();
        return Some(ps.map(|p| {
            *finite
                .select_nth_unstable_by(rank_of(p, n), f32::total_cmp)
                .1
        }));
    }
    let brackets = sample_brackets(celsius, ps, sample);
    let counts = BracketPass::over(celsius, &brackets);
    if counts.finite == 0 {
        return None;
    }
    let mut kept = counts.kept;
    let mut all: Option<Vec<f32>> = None;
    Some(std::array::from_fn(|i| {
        let rank = rank_of(ps[i], counts.finite);
        let below = counts.below[i];
        if (below..below + kept[i].len()).contains(&rank) {
            *kept[i]
                .select_nth_unstable_by(rank - below, f32::total_cmp)
                .1
        } else {
            // Rare: the sample misled. The exact answer all the same, slowly.
            let all = all
                .get_or_insert_with(|| celsius.iter().copied().filter(|t| t.is_finite()).collect());
            *all.select_nth_unstable_by(rank, f32::total_cmp).1
        }
    }))
}

/// Per percentile, a `[a, b]` value bracket from an evenly spaced sample of `sample`
/// values, four standard errors wide on each side. `f32::MIN`/`f32::MAX` stand for an
/// open side, so that `a <= t && t <= b` also rejects NaN and the infinities.
fn sample_brackets<const N: usize>(
    celsius: &[f32],
    ps: [f64; N],
    sample: usize,
) -> [(f32, f32); N] {
    let stride = (celsius.len() / sample).max(1);
    let mut drawn: Vec<f32> = celsius
        .iter()
        .skip(stride / 2)
        .step_by(stride)
        .copied()
        .filter(|t| t.is_finite())
        .collect();
    let m = drawn.len();
    if m == 0 {
        return [(f32::MIN, f32::MAX); N];
    }
    // The sample ranks of each bracket's two sides (`None`: open).
    let sides: [(Option<usize>, Option<usize>); N] = ps.map(|p| {
        let q = p.clamp(0.0, 100.0) / 100.0;
        let centre = q * (m - 1) as f64;
        let margin = 4.0 * (m as f64 * q * (1.0 - q)).sqrt() + 2.0;
        let a = (centre - margin >= 0.0).then(|| (centre - margin).floor() as usize);
        let b = (centre + margin <= (m - 1) as f64).then(|| (centre + margin).ceil() as usize);
        (a, b)
    });
    // Those ranks selected in ascending order, each among the values above the last.
    let mut ranks: Vec<usize> = sides
        .iter()
        .flat_map(|&(a, b)| [a, b])
        .flatten()
        .map(|r| r.min(m - 1))
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    let mut start = 0;
    for &rank in &ranks {
        drawn[start..].select_nth_unstable_by(rank - start, f32::total_cmp);
        start = rank + 1;
    }
    sides.map(|(a, b)| {
        (
            a.map_or(f32::MIN, |r| drawn[r.min(m - 1)]),
            b.map_or(f32::MAX, |r| drawn[r.min(m - 1)]),
        )
    })
}

/// What the one pass over a frame finds for a set of brackets.
struct BracketPass<const N: usize> {
    /// Finite values.
    finite: usize,
    /// Per bracket, the finite values below it.
    below: [usize; N],
    /// Per bracket, every value inside it.
    kept: [Vec<f32>; N],
}

impl<const N: usize> BracketPass<N> {
    /// The pass over `celsius`, in groups of 64. Per group, counted in vector lanes with
    /// plain comparisons (no finiteness test: NaN fails every comparison, +∞ passes none
    /// of these, −∞ is counted on its own and taken off): the values ≤ `f32::MAX` and
    /// < `f32::MIN` (so the finite ones), and per bracket those < `a` and ≤ `b` (so
    /// those below it and inside it). The values inside are kept only from the groups
    /// that have any: a bracket's values sit in a few patches of a thermal image, so
    /// most groups keep nothing.
    fn over(celsius: &[f32], brackets: &[(f32, f32); N]) -> Self {
        let inside_of = |(a, b): (f32, f32), t: f32| (a <= t) & (t <= b);
        let (mut not_above_max, mut minus_infinite) = (0usize, 0usize);
        let mut less_than_a = [0usize; N];
        let mut kept: [Vec<f32>; N] = std::array::from_fn(|_| Vec::new());
        for group in celsius.chunks(64) {
            let (mut g_max, mut g_minus) = (0u32, 0u32);
            let (mut g_a, mut g_b) = ([0u32; N], [0u32; N]);
            for &t in group {
                g_max += u32::from(t <= f32::MAX);
                g_minus += u32::from(t < f32::MIN);
                for (i, &(a, b)) in brackets.iter().enumerate() {
                    g_a[i] += u32::from(t < a);
                    g_b[i] += u32::from(t <= b);
                }
            }
            not_above_max += g_max as usize;
            minus_infinite += g_minus as usize;
            for i in 0..N {
                less_than_a[i] += g_a[i] as usize;
                if g_b[i] > g_a[i] {
                    let bracket = brackets[i];
                    kept[i].extend(group.iter().filter(|&&t| inside_of(bracket, t)));
                }
            }
        }
        Self {
            finite: not_above_max - minus_infinite,
            below: less_than_a.map(|l| l - minus_infinite),
            kept,
        }
    }
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
        self.resample(
            &unit.values,
            (unit.width as usize, unit.height as usize),
            channels,
            |v| v,
        )
    }

    /// Letterboxes the `sw × sh` image `source`, each value passed through `map` first
    /// (once per source row sampled, not once per tap).
    fn resample(
        &self,
        source: &[f32],
        (sw, sh): (usize, usize),
        channels: usize,
        map: impl Fn(f32) -> f32 + Copy,
    ) -> Vec<f32> {
        let (w, h) = (self.input_width as usize, self.input_height as usize);
        let mut plane = vec![PAD_VALUE; w * h];
        // Bilinear sampling at pixel centres (OpenCV's INTER_LINEAR convention), the
        // resize Ultralytics trains with.
        let fx = sw as f32 / self.inner_width as f32;
        let fy = sh as f32 / self.inner_height as f32;
        let columns = Columns::new(self.inner_width as usize, sw, fx);
        let (inner_w, inner_h) = (self.inner_width as usize, self.inner_height as usize);
        let (pad_x, pad_y) = (self.pad_x as usize, self.pad_y as usize);
        // The two mapped source rows the current output row interpolates between; the
        // row index is `usize::MAX` while a slot is empty.
        let mut rows = [
            (usize::MAX, vec![0.0f32; sw]),
            (usize::MAX, vec![0.0f32; sw]),
        ];
        // Maps source row `y` into a slot (unless one holds it already), never evicting
        // row `keep`; returns the slot. `move`: the closure holds its own copy of `map`,
        // whose constants then stay in registers (borrowed, they were reloaded after
        // every store into the row and the loop stayed scalar).
        let fetch = move |rows: &mut [(usize, Vec<f32>); 2], y: usize, keep: usize| -> usize {
            if let Some(slot) = rows.iter().position(|(row, _)| *row == y) {
                return slot;
            }
            let slot = usize::from(rows[0].0 == keep);
            let (row, values) = &mut rows[slot];
            *row = y;
            for (v, &t) in values.iter_mut().zip(&source[y * sw..(y + 1) * sw]) {
                *v = map(t);
            }
            slot
        };
        let inner = &mut plane[pad_y * w..(pad_y + inner_h) * w];
        for (oy, out_row) in inner.chunks_exact_mut(w).enumerate() {
            let sy = ((oy as f32 + 0.5) * fy - 0.5).clamp(0.0, (sh - 1) as f32);
            let y0 = sy.floor() as usize;
            let y1 = (y0 + 1).min(sh - 1);
            let wy = sy - y0 as f32;
            let s0 = fetch(&mut rows, y0, y1);
            let s1 = fetch(&mut rows, y1, y0);
            let (r0, r1) = (&rows[s0].1, &rows[s1].1);
            columns.blend(r0, r1, wy, &mut out_row[pad_x..pad_x + inner_w]);
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

/// Which source columns each output column of a letterbox blends, and with what weight.
///
/// The two regular patterns a FLIR frame meets (halving 640×480 into 320×240, and
/// 640×480 at its own width) get their own loops over contiguous source values, which
/// the compiler vectorises; every pattern computes the same expression with the same
/// weights as the general table, so the values are identical.
enum Columns {
    /// Output column `x` blends source columns `2x` and `2x + 1`, weight `wx` on the
    /// second.
    Halved { wx: f32 },
    /// Output column `x` blends source columns `x` and `x + 1` (the last one with
    /// itself), weight `wx` on the second.
    Same { wx: f32 },
    /// Any other scale: per output column `(x0, x1, wx)`.
    Table(Vec<(usize, usize, f32)>),
}

impl Columns {
    /// The columns of an `inner`-wide output sampling an `sw`-wide source at `fx` source
    /// pixels per output pixel, at pixel centres.
    fn new(inner: usize, sw: usize, fx: f32) -> Self {
        let table: Vec<(usize, usize, f32)> = (0..inner)
            .map(|ox| {
                let sx = ((ox as f32 + 0.5) * fx - 0.5).clamp(0.0, (sw - 1) as f32);
                let x0 = sx.floor() as usize;
                (x0, (x0 + 1).min(sw - 1), sx - x0 as f32)
            })
            .collect();
        let wx = table.first().map_or(0.0, |c| c.2);
        let halved = table
            .iter()
            .enumerate()
            .all(|(ox, &c)| c == (2 * ox, 2 * ox + 1, wx));
        let same = table
            .iter()
            .enumerate()
            .all(|(ox, &c)| c == (ox, (ox + 1).min(sw - 1), wx));
        if halved {
            Self::Halved { wx }
        } else if same {
            Self::Same { wx }
        } else {
            Self::Table(table)
        }
    }

    /// One output row: source rows `r0` and `r1` blended with weight `wy` on `r1`.
    fn blend(&self, r0: &[f32], r1: &[f32], wy: f32, out: &mut [f32]) {
        let pixel = |a0: f32, a1: f32, b0: f32, b1: f32, wx: f32| {
            let top = a0 * (1.0 - wx) + a1 * wx;
            let bottom = b0 * (1.0 - wx) + b1 * wx;
            top * (1.0 - wy) + bottom * wy
        };
        match self {
            Self::Halved { wx } => {
                for ((o, a), b) in out
                    .iter_mut()
                    .zip(r0.chunks_exact(2))
                    .zip(r1.chunks_exact(2))
                {
                    *o = pixel(a[0], a[1], b[0], b[1], *wx);
                }
            }
            Self::Same { wx } => {
                let pairs = out.len().min(r0.len() - 1);
                let (body, last) = out.split_at_mut(pairs);
                for ((o, a), b) in body.iter_mut().zip(r0.windows(2)).zip(r1.windows(2)) {
                    *o = pixel(a[0], a[1], b[0], b[1], *wx);
                }
                // Only when the output is as wide as the source: its last column.
                for o in last {
                    let (a, b) = (r0[r0.len() - 1], r1[r1.len() - 1]);
                    *o = pixel(a, a, b, b, *wx);
                }
            }
            Self::Table(table) => {
                for (o, &(x0, x1, wx)) in out.iter_mut().zip(table) {
                    *o = pixel(r0[x0], r0[x1], r1[x0], r1[x1], wx);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The letterbox written the plain way, one bilinear sample per input pixel over the
    /// unit image: what [`model_input`]'s row cache and column patterns must equal.
    fn reference_letterbox(lb: &Letterbox, unit: &UnitImage, channels: usize) -> Vec<f32> {
        let (w, h) = (lb.input_width as usize, lb.input_height as usize);
        let mut plane = vec![PAD_VALUE; w * h];
        let (sw, sh) = (unit.width as usize, unit.height as usize);
        let fx = sw as f32 / lb.inner_width as f32;
        let fy = sh as f32 / lb.inner_height as f32;
        for oy in 0..lb.inner_height as usize {
            let sy = ((oy as f32 + 0.5) * fy - 0.5).clamp(0.0, (sh - 1) as f32);
            let y0 = sy.floor() as usize;
            let y1 = (y0 + 1).min(sh - 1);
            let wy = sy - y0 as f32;
            for ox in 0..lb.inner_width as usize {
                let sx = ((ox as f32 + 0.5) * fx - 0.5).clamp(0.0, (sw - 1) as f32);
                let x0 = sx.floor() as usize;
                let x1 = (x0 + 1).min(sw - 1);
                let wx = sx - x0 as f32;
                let v = |x: usize, y: usize| unit.values[y * sw + x];
                let top = v(x0, y0) * (1.0 - wx) + v(x1, y0) * wx;
                let bottom = v(x0, y1) * (1.0 - wx) + v(x1, y1) * wx;
                plane[(oy + lb.pad_y as usize) * w + lb.pad_x as usize + ox] =
                    top * (1.0 - wy) + bottom * wy;
            }
        }
        plane.repeat(channels.max(1))
    }

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
    fn percentiles_equal_a_full_sort() {
        // A skewed scene with a far outlier, repeated values and a NaN, large enough
        // for the sampled bracket.
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
        // A frame whose evenly spaced sample misleads (every sampled pixel is hot): the
        // brackets miss and the full selection still gives the exact value.
        let stride = values.len() / PERCENTILE_SAMPLE;
        for (i, v) in values.iter_mut().enumerate() {
            if i % stride == stride / 2 {
                *v = 1000.0 + i as f32;
            }
        }
        for p in [1.0, 99.5] {
            assert_eq!(
                percentiles(&values, [p]).unwrap()[0],
                sorted_percentile(&values, p),
                "misleading sample, percentile {p}"
            );
        }
    }

    #[test]
    fn percentiles_skip_infinities_and_nans() {
        let values = [
            f32::NEG_INFINITY,
            4.0,
            f32::NAN,
            1.0,
            3.0,
            f32::INFINITY,
            2.0,
        ];
        assert_eq!(percentiles(&values, [0.0, 100.0]), Some([1.0, 4.0]));
        assert_eq!(
            percentiles(&[f32::INFINITY, f32::NAN, f32::NEG_INFINITY], [50.0]),
            None
        );
        // Fewer values than one vector lane, and a range so narrow its bin scale
        // overflows.
        assert_eq!(percentiles(&[2.0, 1.0], [0.0, 100.0]), Some([1.0, 2.0]));
        let tiny = f32::from_bits(1);
        assert_eq!(percentiles(&[0.0, tiny], [0.0, 100.0]), Some([0.0, tiny]));
    }

    #[test]
    fn model_input_equals_the_letterboxed_unit_image_value_for_value() {
        // The agent's fused path must give the model exactly what `synth` trained it on:
        // downscale by 2 (T560 into 320×256), scale 1 (into 640×512), an upscale, odd
        // sizes, and non-finite pixels.
        let img = image(640, 480, |x, y| {
            if (x, y) == (7, 9) {
                f32::NAN
            } else if (x, y) == (600, 400) {
                f32::INFINITY
            } else {
                15.0 + 0.05 * x as f32
                    + 0.03 * y as f32
                    + if (x / 40 + y / 30) % 5 == 0 {
                        30.0
                    } else {
                        0.0
                    }
            }
        });
        let unit = unit_image(&img);
        for (w, h) in [(320, 256), (640, 512), (1280, 1024), (333, 211), (64, 64)] {
            let lb = Letterbox::fit(640, 480, w, h);
            for channels in [1, 3] {
                let fused = model_input(&img, &lb, channels);
                let reference = reference_letterbox(&lb, &unit, channels);
                assert_eq!(fused.len(), reference.len());
                let differing = fused
                    .iter()
                    .zip(&reference)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(differing, 0, "{w}x{h}, {channels} channel(s)");
            }
        }
    }

    /// A °C value for the property tests: mostly ordinary, sometimes repeated, far out,
    /// or not finite.
    fn celsius_value() -> impl Strategy<Value = f32> {
        prop_oneof![
            8 => -40.0f32..600.0,
            2 => Just(25.0f32),
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
            1 => Just(1.0e30f32),
        ]
    }

    proptest! {
        #[test]
        fn percentiles_equal_a_full_sort_on_any_values(
            values in proptest::collection::vec(celsius_value(), 1..600),
            p in 0.0f64..=100.0,
            sample in 1usize..40,
        ) {
            // Small samples, so that most vectors take the bracketed pass and some
            // brackets miss (the fallback).
            let expected = values
                .iter()
                .any(|t| t.is_finite())
                .then(|| sorted_percentile(&values, p));
            prop_assert_eq!(percentiles_sampled(&values, [p], sample).map(|[v]| v), expected);
            let [lo, hi] = [1.0, 99.5].map(|p| {
                values.iter().any(|t| t.is_finite()).then(|| sorted_percentile(&values, p))
            });
            prop_assert_eq!(
                percentiles_sampled(&values, [1.0, 99.5], sample),
                lo.zip(hi).map(|(lo, hi)| [lo, hi])
            );
        }

        #[test]
        fn model_input_equals_the_letterboxed_unit_image_on_any_frame(
            (w, h, values) in (1u32..48, 1u32..48).prop_flat_map(|(w, h)| {
                (Just(w), Just(h), proptest::collection::vec(celsius_value(), (w * h) as usize))
            }),
            (dst_w, dst_h) in (1u32..80, 1u32..80),
            shape in 0u8..3,
            extra in 0u32..9,
            channels in 1usize..=3,
        ) {
            let img = TemperatureImage::new(w, h, values).unwrap();
            // Any size, or the two column patterns with their own loops: half the
            // width (an even frame) and the frame's own width, with a letterbox band.
            let (dst_w, dst_h) = match shape {
                1 if w % 2 == 0 => (w / 2, h.div_ceil(2) + extra),
                2 => (w, h + extra),
                _ => (dst_w, dst_h),
            };
            let lb = Letterbox::fit(w, h, dst_w, dst_h);
            let fused: Vec<u32> = model_input(&img, &lb, channels)
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let unit = unit_image(&img);
            let reference: Vec<u32> =
                reference_letterbox(&lb, &unit, channels).iter().map(|v| v.to_bits()).collect();
            let applied: Vec<u32> = lb.apply(&unit, channels).iter().map(|v| v.to_bits()).collect();
            prop_assert_eq!(&fused, &reference);
            prop_assert_eq!(&applied, &reference);
        }
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
