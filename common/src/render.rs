//! Palette rendering of thermograms: [`TemperatureImage`] → RGB picture → PNG bytes.
//!
//! # Pipeline
//!
//! 1. **Colour mapping.** Every pixel's °C value is placed inside a [`TemperatureSpan`]
//!    (values outside it are clamped to its ends) and looked up in a 256-entry colour
//!    table built once per call from the [`Palette`]'s colour stops. NaN pixels (no
//!    data) are drawn in [`NAN_RGB`], a colour that none of the palettes produces.
//! 2. **Upscaling.** Nearest neighbour by an integer factor, so one radiometric pixel
//!    stays a crisp square; the default factor makes an 80×60 sensor image readable.
//! 3. **Overlays.** Each [`Overlay`] is a box around a hotspot or component, given in
//!    raw image pixels, with a text label on a dark background.
//! 4. **Scale bar.** Optionally, a vertical colour bar with °C tick labels is appended
//!    on the right, outside the thermal image.
//!
//! [`encode_png`] then turns the result into 8-bit RGB PNG bytes. Nothing here touches
//! the file system.
//!
//! # Invariants
//!
//! - The output height is always `image.height() × scale`; the output width is
//!   `image.width() × scale`, plus the scale bar panel when it is on.
//! - Overlays and their labels are clipped to the thermal image area: they never
//!   spill into the scale bar panel and never index outside the pixel buffer.
//! - Boxes keep the same look on every palette: a coloured line between two 1-px
//!   black outlines, drawn outside the boxed pixels where the image edge allows it.
//!
//! Text uses the public-domain 8×8 bitmap font of the `font8x8` crate (basic Latin
//! plus the Latin-1 supplement, which carries `°`); other characters show as `?`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::geometry::PixelRect;
use crate::image::TemperatureImage;

/// Colour of pixels whose temperature is NaN (no data). No palette produces it.
pub const NAN_RGB: [u8; 3] = [0, 160, 140];

/// Largest upscale factor accepted in [`RenderOptions::scale`].
pub const MAX_SCALE: u32 = 8;

/// [`RenderOptions::scale`] value that asks [`render`] to choose the factor itself.
pub const AUTO_SCALE: u32 = 0;

/// Width, in output pixels, that [`AUTO_SCALE`] tries to reach: the smallest factor
/// making the scaled image at least this wide is used (capped at [`MAX_SCALE`]).
pub const AUTO_SCALE_MIN_WIDTH: u32 = 480;

/// Largest number of output pixels (`width × height`) [`render`] will allocate.
pub const MAX_OUTPUT_PIXELS: u64 = 1 << 26;

/// Box and label colours for overlay levels 0..=4: white, yellow, orange, red, magenta.
const LEVEL_RGB: [[u8; 3]; 5] = [
    [255, 255, 255],
    [255, 230, 0],
    [255, 140, 0],
    [255, 40, 40],
    [255, 0, 255],
];

/// Outline colour around boxes.
const OUTLINE_RGB: [u8; 3] = [0, 0, 0];
/// Background behind overlay labels.
const LABEL_BACKGROUND_RGB: [u8; 3] = [0, 0, 0];
/// Background of the scale bar panel.
const PANEL_BACKGROUND_RGB: [u8; 3] = [24, 24, 24];
/// Text and tick colour of the scale bar panel.
const PANEL_TEXT_RGB: [u8; 3] = [235, 235, 235];

/// Side of one font glyph in font pixels.
const GLYPH_SIDE: u32 = 8;

/// Errors of palette rendering and PNG encoding.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A palette name that [`Palette::from_str`] does not know.
    #[error("unknown palette {value:?} (valid: iron, rainbow, grey, gray)")]
    UnknownPalette {
        /// The name given.
        value: String,
    },
    /// The temperature span is not finite or not strictly increasing.
    #[error("temperature span {low_c}..{high_c} °C is invalid (needs finite values, low < high)")]
    InvalidSpan {
        /// Requested low end, °C.
        low_c: f32,
        /// Requested high end, °C.
        high_c: f32,
    },
    /// The upscale factor is out of range.
    #[error("scale factor {scale} is out of range (0 = auto, 1..={max})", max = MAX_SCALE)]
    InvalidScale {
        /// The factor given.
        scale: u32,
    },
    /// The rendered picture would exceed [`MAX_OUTPUT_PIXELS`].
    #[error("rendered image {width}x{height} is too large (max {max} pixels)", max = MAX_OUTPUT_PIXELS)]
    OutputTooLarge {
        /// Output width that would result.
        width: u64,
        /// Output height that would result.
        height: u64,
    },
    /// An overlay's top-left corner lies outside the image.
    #[error("overlay {label:?} at {x},{y} starts outside the {width}x{height} image")]
    OverlayOutOfBounds {
        /// The overlay's label.
        label: String,
        /// Left column of the overlay.
        x: u32,
        /// Top row of the overlay.
        y: u32,
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
    /// An [`RgbImage`]'s pixel buffer does not match its size.
    #[error("rgb image {width}x{height} needs {expected} bytes, got {actual}")]
    BufferMismatch {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// `width × height × 3`.
        expected: u64,
        /// Bytes present.
        actual: usize,
    },
    /// The PNG encoder failed.
    #[error("png encoding failed")]
    Png(#[source] png::EncodingError),
}

/// A false-colour palette for thermograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Palette {
    /// FLIR-style "iron": black → deep blue/purple → red → orange → yellow → white.
    #[default]
    Iron,
    /// Dark blue → blue → cyan → green → yellow → red → near white.
    Rainbow,
    /// Black → white.
    Grey,
}

/// Colour stops `(position 0..=1, rgb)`, positions strictly increasing from 0 to 1.
type ColourStops = &'static [(f32, [u8; 3])];

const IRON_STOPS: ColourStops = &[
    (0.00, [0, 0, 0]),
    (0.12, [20, 0, 90]),
    (0.28, [95, 0, 150]),
    (0.42, [165, 15, 140]),
    (0.56, [220, 55, 60]),
    (0.70, [245, 125, 15]),
    (0.84, [255, 195, 35]),
    (0.94, [255, 240, 140]),
    (1.00, [255, 255, 255]),
];

const RAINBOW_STOPS: ColourStops = &[
    (0.00, [0, 0, 96]),
    (0.15, [0, 0, 255]),
    (0.35, [0, 255, 255]),
    (0.50, [0, 255, 0]),
    (0.65, [255, 255, 0]),
    (0.85, [255, 0, 0]),
    (1.00, [255, 235, 235]),
];

const GREY_STOPS: ColourStops = &[(0.0, [0, 0, 0]), (1.0, [255, 255, 255])];

impl Palette {
    /// Every palette, in documentation order.
    pub const ALL: [Palette; 3] = [Palette::Iron, Palette::Rainbow, Palette::Grey];

    /// The lowercase name used by [`FromStr`], [`fmt::Display`] and serde.
    pub fn name(self) -> &'static str {
        match self {
            Palette::Iron => "iron",
            Palette::Rainbow => "rainbow",
            Palette::Grey => "grey",
        }
    }

    fn stops(self) -> ColourStops {
        match self {
            Palette::Iron => IRON_STOPS,
            Palette::Rainbow => RAINBOW_STOPS,
            Palette::Grey => GREY_STOPS,
        }
    }

    /// The palette's 256-entry colour table: entry 0 is the cold end, entry 255 the hot end.
    pub fn colour_table(self) -> [[u8; 3]; 256] {
        let stops = self.stops();
        let mut table = [[0u8; 3]; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let t = i as f32 / 255.0;
            // The segment [a, b] holding t; stops start at 0 and end at 1.
            let upper = stops
                .iter()
                .position(|&(pos, _)| pos >= t)
                .unwrap_or(stops.len() - 1)
                .max(1);
            let (pos_a, rgb_a) = stops[upper - 1];
            let (pos_b, rgb_b) = stops[upper];
            let f = ((t - pos_a) / (pos_b - pos_a)).clamp(0.0, 1.0);
            for c in 0..3 {
                let a = f32::from(rgb_a[c]);
                let b = f32::from(rgb_b[c]);
                entry[c] = (a + (b - a) * f).round().clamp(0.0, 255.0) as u8;
            }
        }
        table
    }
}

impl fmt::Display for Palette {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Palette {
    type Err = RenderError;

    /// Accepts `iron`, `rainbow`, `grey` and `gray`, ignoring ASCII case and
    /// surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "iron" => Ok(Palette::Iron),
            "rainbow" => Ok(Palette::Rainbow),
            "grey" | "gray" => Ok(Palette::Grey),
            _ => Err(RenderError::UnknownPalette {
                value: s.to_owned(),
            }),
        }
    }
}

/// The °C range mapped onto the palette; values outside it take the end colours.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemperatureSpan {
    /// Temperature drawn in the palette's cold-end colour, °C.
    pub low_c: f32,
    /// Temperature drawn in the palette's hot-end colour, °C.
    pub high_c: f32,
}

impl TemperatureSpan {
    /// Narrowest span [`TemperatureSpan::auto`] produces, °C.
    pub const MIN_AUTO_WIDTH_C: f32 = 1.0;

    /// A span from `low_c` to `high_c`; both must be finite and `low_c < high_c`.
    pub fn new(low_c: f32, high_c: f32) -> Result<Self, RenderError> {
        let span = Self { low_c, high_c };
        span.validate()?;
        Ok(span)
    }

    /// The image's coldest to hottest finite pixel, widened symmetrically to at least
    /// [`Self::MIN_AUTO_WIDTH_C`] so a flat image does not divide by zero.
    ///
    /// An image without any finite pixel gives 0..1 °C.
    pub fn auto(image: &TemperatureImage) -> Self {
        let mut low = f32::INFINITY;
        let mut high = f32::NEG_INFINITY;
        for &c in image.celsius().iter().filter(|c| c.is_finite()) {
            low = low.min(c);
            high = high.max(c);
        }
        if low > high {
            return Self {
                low_c: 0.0,
                high_c: 1.0,
            };
        }
        if high - low < Self::MIN_AUTO_WIDTH_C {
            // f64 midpoint: avoids overflow when the values sit near f32::MAX.
            let mid = (f64::from(low) + f64::from(high)) / 2.0;
            let half = f64::from(Self::MIN_AUTO_WIDTH_C) / 2.0;
            low = (mid - half) as f32;
            high = (mid + half) as f32;
        }
        Self {
            low_c: low,
            high_c: high,
        }
    }

    /// Checks that both ends are finite and `low_c < high_c`.
    pub fn validate(&self) -> Result<(), RenderError> {
        if self.low_c.is_finite()
            && self.high_c.is_finite()
            && self.low_c < self.high_c
            && (self.high_c - self.low_c).is_finite()
        {
            Ok(())
        } else {
            Err(RenderError::InvalidSpan {
                low_c: self.low_c,
                high_c: self.high_c,
            })
        }
    }
}

/// A box drawn around a hotspot or component, with a text label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// The boxed region in raw (unscaled) image pixels. Its top-left corner must lie
    /// inside the image; a part beyond the right or bottom edge is clipped.
    pub rect: PixelRect,
    /// Text shown next to the box, e.g. `"81.4 °C L3"`; empty for none.
    pub label: String,
    /// Box and label colour: 0 white (neutral), 1 yellow, 2 orange, 3 red,
    /// 4 magenta; larger values draw as 4.
    pub level: u8,
}

/// How [`render`] draws a thermogram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RenderOptions {
    /// Palette used for the image and the scale bar.
    pub palette: Palette,
    /// °C range mapped onto the palette; `None` uses [`TemperatureSpan::auto`].
    pub span: Option<TemperatureSpan>,
    /// Integer nearest-neighbour upscale factor, 1..=[`MAX_SCALE`]; [`AUTO_SCALE`]
    /// (0, the default) picks the smallest factor making the image at least
    /// [`AUTO_SCALE_MIN_WIDTH`] pixels wide (6 for an 80×60 sensor, 1 for 640×480).
    pub scale: u32,
    /// Append a vertical colour bar with °C ticks on the right (default `true`).
    pub scale_bar: bool,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            palette: Palette::Iron,
            span: None,
            scale: AUTO_SCALE,
            scale_bar: true,
        }
    }
}

impl RenderOptions {
    /// The upscale factor [`render`] uses for an image `image_width` pixels wide.
    pub fn effective_scale(&self, image_width: u32) -> Result<u32, RenderError> {
        match self.scale {
            AUTO_SCALE => {
                let width = image_width.max(1);
                Ok(AUTO_SCALE_MIN_WIDTH.div_ceil(width).clamp(1, MAX_SCALE))
            }
            s if s <= MAX_SCALE => Ok(s),
            s => Err(RenderError::InvalidScale { scale: s }),
        }
    }
}

/// An 8-bit RGB picture, row-major, 3 bytes per pixel, no padding between rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width × height × 3` bytes: R, G, B of each pixel, rows top to bottom.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// The colour at column `x`, row `y`, or `None` outside the picture.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        let p = self.pixels.get(i..i + 3)?;
        Some([p[0], p[1], p[2]])
    }
}

/// Renders a thermogram in false colour with overlays and an optional scale bar.
///
/// The thermal image occupies the top-left `image.width() × scale` by
/// `image.height() × scale` pixels of the result (see
/// [`RenderOptions::effective_scale`]); with [`RenderOptions::scale_bar`] the picture
/// is wider by the bar panel, whose width depends on the text size and the tick labels.
///
/// Fails on an invalid span or scale, an overlay starting outside the image, or an
/// output larger than [`MAX_OUTPUT_PIXELS`].
pub fn render(
    image: &TemperatureImage,
    overlays: &[Overlay],
    options: &RenderOptions,
) -> Result<RgbImage, RenderError> {
    let span = match options.span {
        Some(span) => {
            span.validate()?;
            span
        }
        None => TemperatureSpan::auto(image),
    };
    let scale = options.effective_scale(image.width())?;
    for overlay in overlays {
        if overlay.rect.x >= image.width() || overlay.rect.y >= image.height() {
            return Err(RenderError::OverlayOutOfBounds {
                label: overlay.label.clone(),
                x: overlay.rect.x,
                y: overlay.rect.y,
                width: image.width(),
                height: image.height(),
            });
        }
    }

    let scaled_w = u64::from(image.width()) * u64::from(scale);
    let scaled_h = u64::from(image.height()) * u64::from(scale);
    let text_scale = text_scale_for(scaled_w, scaled_h);
    let bar = options
        .scale_bar
        .then(|| ScaleBarLayout::new(span, text_scale));
    let total_w = scaled_w + bar.as_ref().map_or(0, |b| u64::from(b.panel_width));
    if total_w * scaled_h > MAX_OUTPUT_PIXELS {
        return Err(RenderError::OutputTooLarge {
            width: total_w,
            height: scaled_h,
        });
    }
    // Both fit in u32: their product is at most MAX_OUTPUT_PIXELS < 2^32.
    let (scaled_w, scaled_h, total_w) = (scaled_w as u32, scaled_h as u32, total_w as u32);

    let table = options.palette.colour_table();
    let mut out = RgbImage {
        width: total_w,
        height: scaled_h,
        pixels: vec![0; total_w as usize * scaled_h as usize * 3],
    };
    paint_thermal(&mut out, image, span, &table, scale);

    let mut canvas = Canvas {
        image: &mut out,
        clip: ClipRect {
            x0: 0,
            y0: 0,
            x1: i64::from(scaled_w),
            y1: i64::from(scaled_h),
        },
    };
    let line = i64::from(text_scale);
    for overlay in overlays {
        draw_overlay(&mut canvas, overlay, scale, line, text_scale);
    }

    if let Some(bar) = bar {
        canvas.clip = ClipRect {
            x0: i64::from(scaled_w),
            y0: 0,
            x1: i64::from(total_w),
            y1: i64::from(scaled_h),
        };
        bar.draw(&mut canvas, &table, i64::from(scaled_w));
    }
    Ok(out)
}

/// Encodes an [`RgbImage`] as an 8-bit RGB PNG.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>, RenderError> {
    let expected = u64::from(image.width) * u64::from(image.height) * 3;
    if expected != image.pixels.len() as u64 {
        return Err(RenderError::BufferMismatch {
            width: image.width,
            height: image.height,
            expected,
            actual: image.pixels.len(),
        });
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(RenderError::Png)?;
    writer
        .write_image_data(&image.pixels)
        .map_err(RenderError::Png)?;
    writer.finish().map_err(RenderError::Png)?;
    Ok(bytes)
}

/// Text scale 2 once the scaled image is large enough to afford 16-px glyphs.
fn text_scale_for(scaled_w: u64, scaled_h: u64) -> u32 {
    if scaled_w.min(scaled_h) >= 240 {
        2
    } else {
        1
    }
}

/// Colour-maps the image into the top-left of `out`, upscaled by `scale`.
fn paint_thermal(
    out: &mut RgbImage,
    image: &TemperatureImage,
    span: TemperatureSpan,
    table: &[[u8; 3]; 256],
    scale: u32,
) {
    let stride = out.width as usize * 3;
    let scale = scale as usize;
    let k = 255.0 / (span.high_c - span.low_c);
    let src_w = image.width() as usize;
    let mut scaled_row = Vec::with_capacity(src_w * scale * 3);
    for (src_y, src_row) in image.celsius().chunks_exact(src_w).enumerate() {
        scaled_row.clear();
        for &c in src_row {
            let rgb = if c.is_nan() {
                NAN_RGB
            } else {
                // ±∞ clamp to the ends like any out-of-span value.
                table[((c - span.low_c) * k).round().clamp(0.0, 255.0) as usize]
            };
            for _ in 0..scale {
                scaled_row.extend_from_slice(&rgb);
            }
        }
        for dy in 0..scale {
            let start = (src_y * scale + dy) * stride;
            out.pixels[start..start + scaled_row.len()].copy_from_slice(&scaled_row);
        }
    }
}

/// Half-open drawing bounds in output pixels.
#[derive(Debug, Clone, Copy)]
struct ClipRect {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

/// Clipped drawing primitives over an [`RgbImage`]. Coordinates are signed so that
/// shapes may start off-picture; every write is clipped to `clip`.
struct Canvas<'a> {
    image: &'a mut RgbImage,
    clip: ClipRect,
}

impl Canvas<'_> {
    /// Fills the half-open rectangle `[x0, x1) × [y0, y1)`.
    fn fill(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, rgb: [u8; 3]) {
        let x0 = x0.max(self.clip.x0).max(0);
        let y0 = y0.max(self.clip.y0).max(0);
        let x1 = x1.min(self.clip.x1).min(i64::from(self.image.width));
        let y1 = y1.min(self.clip.y1).min(i64::from(self.image.height));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let stride = self.image.width as usize * 3;
        for y in y0 as usize..y1 as usize {
            let row =
                &mut self.image.pixels[y * stride + x0 as usize * 3..y * stride + x1 as usize * 3];
            for px in row.chunks_exact_mut(3) {
                px.copy_from_slice(&rgb);
            }
        }
    }

    /// A frame of thickness `t` just inside the half-open rectangle.
    fn frame(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, t: i64, rgb: [u8; 3]) {
        self.fill(x0, y0, x1, y0 + t, rgb);
        self.fill(x0, y1 - t, x1, y1, rgb);
        self.fill(x0, y0, x0 + t, y1, rgb);
        self.fill(x1 - t, y0, x1, y1, rgb);
    }

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale` wide.
    fn text(&mut self, x: i64, y: i64, text: &str, scale: u32, rgb: [u8; 3]) {
        let s = i64::from(scale);
        let advance = i64::from(GLYPH_SIDE) * s;
        for (i, ch) in text.chars().enumerate() {
            let gx = x + i as i64 * advance;
            if gx >= self.clip.x1 {
                break;
            }
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..GLYPH_SIDE {
                    // font8x8: bit 0 is the leftmost pixel.
                    if bits >> col & 1 == 1 {
                        let px = gx + i64::from(col) * s;
                        let py = y + row as i64 * s;
                        self.fill(px, py, px + s, py + s, rgb);
                    }
                }
            }
        }
    }
}

/// The 8×8 bitmap of `ch`; `?` for characters the font lacks.
fn glyph(ch: char) -> [u8; 8] {
    use font8x8::legacy::{BASIC_LEGACY, LATIN_LEGACY};
    let code = ch as usize;
    match code {
        0x20..=0x7E => BASIC_LEGACY[code],
        0xA0..=0xFF => LATIN_LEGACY[code - 0xA0],
        _ => BASIC_LEGACY['?' as usize],
    }
}

/// Width in output pixels of `text` at `scale`.
fn text_width(text: &str, scale: u32) -> i64 {
    text.chars().count() as i64 * i64::from(GLYPH_SIDE * scale)
}

/// Draws one overlay box and its label, clipped to the canvas.
fn draw_overlay(
    canvas: &mut Canvas<'_>,
    overlay: &Overlay,
    scale: u32,
    line: i64,
    text_scale: u32,
) {
    let clip = canvas.clip;
    let s = i64::from(scale);
    let r = overlay.rect;
    let rgb = LEVEL_RGB[usize::from(overlay.level).min(LEVEL_RGB.len() - 1)];

    // The boxed pixels, scaled and clipped; an empty rect counts as one pixel.
    let x0 = i64::from(r.x) * s;
    let y0 = i64::from(r.y) * s;
    let x1 = ((i64::from(r.x) + i64::from(r.w.max(1))) * s).min(clip.x1);
    let y1 = ((i64::from(r.y) + i64::from(r.h.max(1))) * s).min(clip.y1);

    // Outline, coloured line, outline: outside the boxed pixels, pushed inwards where
    // the image edge leaves no room, so the whole box always stays visible.
    let border = line + 2;
    let ox0 = (x0 - border).max(clip.x0);
    let oy0 = (y0 - border).max(clip.y0);
    let ox1 = (x1 + border).min(clip.x1);
    let oy1 = (y1 + border).min(clip.y1);
    canvas.frame(ox0, oy0, ox1, oy1, 1, OUTLINE_RGB);
    canvas.frame(ox0 + 1, oy0 + 1, ox1 - 1, oy1 - 1, line, rgb);
    canvas.frame(
        ox0 + 1 + line,
        oy0 + 1 + line,
        ox1 - 1 - line,
        oy1 - 1 - line,
        1,
        OUTLINE_RGB,
    );

    if overlay.label.is_empty() {
        return;
    }
    let pad = i64::from(text_scale);
    let label_w = text_width(&overlay.label, text_scale) + 2 * pad;
    let label_h = i64::from(GLYPH_SIDE * text_scale) + 2 * pad;
    // Above the box, else below it, else inside; then kept inside the image.
    let ly = if oy0 - label_h >= clip.y0 {
        oy0 - label_h
    } else if oy1 + label_h <= clip.y1 {
        oy1
    } else {
        oy0
    };
    let ly = ly.min(clip.y1 - label_h).max(clip.y0);
    let lx = ox0.min(clip.x1 - label_w).max(clip.x0);
    canvas.fill(lx, ly, lx + label_w, ly + label_h, LABEL_BACKGROUND_RGB);
    canvas.text(lx + pad, ly + pad, &overlay.label, text_scale, rgb);
}

/// Geometry and labels of the scale bar panel.
struct ScaleBarLayout {
    span: TemperatureSpan,
    text_scale: u32,
    panel_width: u32,
}

impl ScaleBarLayout {
    const GAP: u32 = 6;
    const BAR_WIDTH: u32 = 14;
    const TICK_LENGTH: u32 = 4;
    const LABEL_GAP: u32 = 3;
    const RIGHT_MARGIN: u32 = 6;
    /// Tick counts tried, most first; the first whose labels do not collide wins.
    const TICK_COUNTS: [u32; 4] = [5, 3, 2, 1];

    fn new(span: TemperatureSpan, text_scale: u32) -> Self {
        let label_chars = [span.low_c, (span.low_c + span.high_c) / 2.0, span.high_c]
            .iter()
            .map(|&c| tick_label(c).chars().count())
            .max()
            .unwrap_or(0) as u32;
        let ts = text_scale;
        let panel_width = ts
            * (Self::GAP
                + Self::BAR_WIDTH
                + Self::TICK_LENGTH
                + Self::LABEL_GAP
                + label_chars * GLYPH_SIDE
                + Self::RIGHT_MARGIN);
        Self {
            span,
            text_scale,
            panel_width,
        }
    }

    /// Draws the panel with its left edge at `left`.
    fn draw(&self, canvas: &mut Canvas<'_>, table: &[[u8; 3]; 256], left: i64) {
        let clip = canvas.clip;
        let ts = i64::from(self.text_scale);
        let height = clip.y1 - clip.y0;
        canvas.fill(clip.x0, clip.y0, clip.x1, clip.y1, PANEL_BACKGROUND_RGB);

        let text_h = i64::from(GLYPH_SIDE) * ts;
        // Leave room so labels centred on the end ticks stay inside the picture.
        let margin = if height >= 2 * text_h + 4 {
            text_h / 2 + ts
        } else {
            0
        };
        let top = clip.y0 + margin;
        let bottom = clip.y1 - 1 - margin; // inclusive, the cold end
        let length = bottom - top;

        let bar_x0 = left + i64::from(Self::GAP) * ts;
        let bar_x1 = bar_x0 + i64::from(Self::BAR_WIDTH) * ts;
        for y in top..=bottom {
            let t = if length > 0 {
                (bottom - y) as f32 / length as f32
            } else {
                1.0
            };
            let rgb = table[(t * 255.0).round().clamp(0.0, 255.0) as usize];
            canvas.fill(bar_x0, y, bar_x1, y + 1, rgb);
        }
        canvas.frame(
            bar_x0 - 1,
            top - 1,
            bar_x1 + 1,
            bottom + 2,
            1,
            PANEL_TEXT_RGB,
        );

        let min_spacing = text_h + 2 * ts;
        let ticks = Self::TICK_COUNTS
            .into_iter()
            .find(|&n| n == 1 || length >= min_spacing * i64::from(n - 1))
            .unwrap_or(1);
        let tick_x1 = bar_x1 + i64::from(Self::TICK_LENGTH) * ts;
        let label_x = tick_x1 + i64::from(Self::LABEL_GAP) * ts;
        for i in 0..ticks {
            // A single tick shows the hot end.
            let f = if ticks == 1 {
                1.0
            } else {
                f64::from(i) / f64::from(ticks - 1)
            };
            let y = bottom - (length as f64 * f).round() as i64;
            let value = f64::from(self.span.low_c)
                + (f64::from(self.span.high_c) - f64::from(self.span.low_c)) * f;
            canvas.fill(bar_x1, y, tick_x1, y + ts.min(2), PANEL_TEXT_RGB);
            let label_y = (y - text_h / 2).min(clip.y1 - text_h).max(clip.y0);
            canvas.text(
                label_x,
                label_y,
                &tick_label(value as f32),
                self.text_scale,
                PANEL_TEXT_RGB,
            );
        }
    }
}

/// `"81.4°C"`: one decimal, never `-0.0`.
fn tick_label(celsius: f32) -> String {
    let text = format!("{celsius:.1}");
    if text == "-0.0" {
        "0.0°C".to_owned()
    } else {
        format!("{text}°C")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luminance(rgb: [u8; 3]) -> f32 {
        0.2126 * f32::from(rgb[0]) + 0.7152 * f32::from(rgb[1]) + 0.0722 * f32::from(rgb[2])
    }

    /// A horizontal gradient from `low` at the left to `high` at the right.
    fn gradient(width: u32, height: u32, low: f32, high: f32) -> TemperatureImage {
        let mut celsius = Vec::new();
        for _ in 0..height {
            for x in 0..width {
                celsius.push(low + (high - low) * x as f32 / (width - 1).max(1) as f32);
            }
        }
        TemperatureImage::new(width, height, celsius).unwrap()
    }

    fn flat(width: u32, height: u32, c: f32) -> TemperatureImage {
        TemperatureImage::new(width, height, vec![c; (width * height) as usize]).unwrap()
    }

    fn opts(palette: Palette, scale: u32, scale_bar: bool) -> RenderOptions {
        RenderOptions {
            palette,
            span: Some(TemperatureSpan::new(0.0, 100.0).unwrap()),
            scale,
            scale_bar,
        }
    }

    #[test]
    fn grey_endpoints_are_black_and_white() {
        let t = Palette::Grey.colour_table();
        assert_eq!(t[0], [0, 0, 0]);
        assert_eq!(t[255], [255, 255, 255]);
        assert_eq!(t[128], [128, 128, 128]);
    }

    #[test]
    fn iron_runs_dark_to_yellow_white() {
        let t = Palette::Iron.colour_table();
        assert!(luminance(t[0]) < 10.0, "{:?}", t[0]);
        let hot = t[255];
        assert!(hot[0] >= 240 && hot[1] >= 220, "{hot:?}");
        // The middle is reddish: red dominates.
        let mid = t[150];
        assert!(mid[0] > mid[1] && mid[0] > mid[2], "{mid:?}");
        // The cold quarter is blue/purple: blue dominates green.
        let cold = t[40];
        assert!(cold[2] > cold[1], "{cold:?}");
    }

    #[test]
    fn rainbow_runs_blue_to_red_to_white() {
        let t = Palette::Rainbow.colour_table();
        assert!(t[0][2] > t[0][0] && t[0][2] > t[0][1]);
        let red = t[(0.85f32 * 255.0).round() as usize];
        assert!(red[0] > 240 && red[1] < 20, "{red:?}");
        assert!(t[255].iter().all(|&c| c >= 230));
    }

    #[test]
    fn grey_luminance_is_strictly_monotonic_and_iron_roughly() {
        let grey = Palette::Grey.colour_table();
        for w in grey.windows(2) {
            assert!(luminance(w[1]) > luminance(w[0]));
        }
        let iron = Palette::Iron.colour_table();
        for w in iron.windows(2) {
            assert!(luminance(w[1]) >= luminance(w[0]) - 1.0, "{:?}", w);
        }
        assert!(luminance(iron[255]) - luminance(iron[0]) > 240.0);
    }

    #[test]
    fn values_outside_the_span_clamp_to_the_ends() {
        let image =
            TemperatureImage::new(4, 1, vec![-500.0, 1e6, f32::NEG_INFINITY, f32::INFINITY])
                .unwrap();
        let out = render(&image, &[], &opts(Palette::Iron, 1, false)).unwrap();
        let t = Palette::Iron.colour_table();
        assert_eq!(out.pixel(0, 0), Some(t[0]));
        assert_eq!(out.pixel(1, 0), Some(t[255]));
        assert_eq!(out.pixel(2, 0), Some(t[0]));
        assert_eq!(out.pixel(3, 0), Some(t[255]));
    }

    #[test]
    fn span_ends_map_to_table_ends() {
        let image = TemperatureImage::new(3, 1, vec![0.0, 50.0, 100.0]).unwrap();
        let out = render(&image, &[], &opts(Palette::Grey, 1, false)).unwrap();
        assert_eq!(out.pixel(0, 0), Some([0, 0, 0]));
        assert_eq!(out.pixel(1, 0), Some([128, 128, 128]));
        assert_eq!(out.pixel(2, 0), Some([255, 255, 255]));
    }

    #[test]
    fn nan_pixels_get_the_nan_colour_which_no_palette_uses() {
        let image = TemperatureImage::new(2, 1, vec![f32::NAN, 20.0]).unwrap();
        for palette in Palette::ALL {
            let out = render(&image, &[], &opts(palette, 1, false)).unwrap();
            assert_eq!(out.pixel(0, 0), Some(NAN_RGB));
            assert_ne!(out.pixel(1, 0), Some(NAN_RGB));
            assert!(!palette.colour_table().contains(&NAN_RGB), "{palette}");
        }
    }

    #[test]
    fn auto_span_is_min_max_ignoring_nan_and_widens_flat_images() {
        let mut celsius = vec![f32::NAN; 4];
        celsius[1] = 12.5;
        celsius[2] = 80.0;
        let image = TemperatureImage::new(2, 2, celsius).unwrap();
        let span = TemperatureSpan::auto(&image);
        assert_eq!((span.low_c, span.high_c), (12.5, 80.0));

        let span = TemperatureSpan::auto(&flat(3, 3, 25.0));
        assert_eq!((span.low_c, span.high_c), (24.5, 25.5));
        span.validate().unwrap();

        let all_nan = TemperatureImage::new(1, 1, vec![f32::NAN]).unwrap();
        TemperatureSpan::auto(&all_nan).validate().unwrap();
        // A flat image renders the middle colour, without dividing by zero.
        let out = render(
            &flat(2, 2, 25.0),
            &[],
            &RenderOptions {
                palette: Palette::Grey,
                scale: 1,
                scale_bar: false,
                span: None,
            },
        )
        .unwrap();
        assert_eq!(out.pixel(0, 0), Some([128, 128, 128]));
    }

    #[test]
    fn invalid_spans_are_rejected() {
        assert!(TemperatureSpan::new(10.0, 10.0).is_err());
        assert!(TemperatureSpan::new(20.0, 10.0).is_err());
        assert!(TemperatureSpan::new(f32::NAN, 10.0).is_err());
        assert!(TemperatureSpan::new(f32::MIN, f32::MAX).is_err());
        let mut options = opts(Palette::Iron, 1, false);
        options.span = Some(TemperatureSpan {
            low_c: 5.0,
            high_c: 1.0,
        });
        let err = render(&flat(2, 2, 1.0), &[], &options).unwrap_err();
        assert!(matches!(err, RenderError::InvalidSpan { .. }), "{err}");
    }

    #[test]
    fn output_size_follows_scale_and_scale_bar() {
        let image = gradient(80, 60, 20.0, 90.0);
        let plain = render(&image, &[], &opts(Palette::Iron, 3, false)).unwrap();
        assert_eq!((plain.width, plain.height), (240, 180));
        assert_eq!(plain.pixels.len(), 240 * 180 * 3);

        let barred = render(&image, &[], &opts(Palette::Iron, 3, true)).unwrap();
        assert_eq!(barred.height, 180);
        assert!(barred.width > 240 + 40, "{}", barred.width);
        assert_eq!(
            barred.pixels.len(),
            (barred.width * barred.height * 3) as usize
        );
        // The thermal part is identical with and without the bar.
        for y in [0, 90, 179] {
            for x in [0, 100, 239] {
                assert_eq!(barred.pixel(x, y), plain.pixel(x, y));
            }
        }

        // Auto scale: 80 px wide → ×6 = 480; 640 px wide → ×1; 20 px wide → capped ×8.
        let auto = RenderOptions {
            scale_bar: false,
            ..RenderOptions::default()
        };
        let out = render(&image, &[], &auto).unwrap();
        assert_eq!((out.width, out.height), (480, 360));
        assert_eq!(auto.effective_scale(640).unwrap(), 1);
        assert_eq!(auto.effective_scale(160).unwrap(), 3);
        assert_eq!(auto.effective_scale(20).unwrap(), 8);
    }

    #[test]
    fn upscaling_is_nearest_neighbour() {
        let image = TemperatureImage::new(2, 1, vec![0.0, 100.0]).unwrap();
        let out = render(&image, &[], &opts(Palette::Grey, 4, false)).unwrap();
        assert_eq!((out.width, out.height), (8, 4));
        for y in 0..4 {
            for x in 0..4 {
                assert_eq!(out.pixel(x, y), Some([0, 0, 0]));
                assert_eq!(out.pixel(x + 4, y), Some([255, 255, 255]));
            }
        }
    }

    #[test]
    fn bad_scale_is_rejected() {
        let err = render(&flat(4, 4, 1.0), &[], &opts(Palette::Iron, 9, false)).unwrap_err();
        assert!(
            matches!(err, RenderError::InvalidScale { scale: 9 }),
            "{err}"
        );
    }

    #[test]
    fn huge_output_is_rejected_before_allocating() {
        let image = flat(4096, 4096, 1.0);
        let err = render(&image, &[], &opts(Palette::Iron, 8, false)).unwrap_err();
        assert!(matches!(err, RenderError::OutputTooLarge { .. }), "{err}");
    }

    #[test]
    fn scale_bar_shows_the_palette_hot_end_on_top() {
        let image = gradient(80, 60, 0.0, 100.0);
        let out = render(&image, &[], &opts(Palette::Grey, 4, true)).unwrap();
        // Scan the column in the middle of the bar.
        let ts = 2; // 320×240 scaled image → text scale 2
        let x = 320 + (ScaleBarLayout::GAP + ScaleBarLayout::BAR_WIDTH / 2) * ts;
        let column: Vec<[u8; 3]> = (0..out.height).filter_map(|y| out.pixel(x, y)).collect();
        assert!(column.contains(&[255, 255, 255]));
        assert!(column.contains(&[0, 0, 0]));
        let white = column.iter().position(|&c| c == [255, 255, 255]);
        let black = column.iter().position(|&c| c == [0, 0, 0]);
        assert!(white < black);
        // Panel background surrounds the bar.
        assert_eq!(out.pixel(320, 0), Some(PANEL_BACKGROUND_RGB));
    }

    #[test]
    fn overlay_box_lands_on_scaled_coordinates() {
        let image = flat(80, 60, 20.0);
        let overlay = Overlay {
            rect: PixelRect {
                x: 10,
                y: 20,
                w: 5,
                h: 4,
            },
            label: String::new(),
            level: 3,
        };
        // Scale 4 → 320×240 → text scale 2 → 2-px coloured line.
        let out = render(&image, &[overlay], &opts(Palette::Grey, 4, false)).unwrap();
        let red = LEVEL_RGB[3];
        let (x0, y0, x1, y1) = (40, 80, 60, 96); // scaled rect, half-open
        let background = out.pixel(0, 0).unwrap();
        // Boxed pixels untouched.
        assert_eq!(out.pixel(x0, y0), Some(background));
        assert_eq!(out.pixel(x1 - 1, y1 - 1), Some(background));
        // Inner outline, coloured line, outer outline, on every side.
        for (inner, colour, outer) in [
            (
                out.pixel(x0 - 1, 88),
                out.pixel(x0 - 2, 88),
                out.pixel(x0 - 4, 88),
            ),
            (
                out.pixel(x1, 88),
                out.pixel(x1 + 1, 88),
                out.pixel(x1 + 3, 88),
            ),
            (
                out.pixel(50, y0 - 1),
                out.pixel(50, y0 - 3),
                out.pixel(50, y0 - 4),
            ),
            (
                out.pixel(50, y1),
                out.pixel(50, y1 + 2),
                out.pixel(50, y1 + 3),
            ),
        ] {
            assert_eq!(inner, Some(OUTLINE_RGB));
            assert_eq!(colour, Some(red));
            assert_eq!(outer, Some(OUTLINE_RGB));
        }
        // Just outside the box: untouched.
        assert_eq!(out.pixel(x0 - 5, 88), Some(background));
    }

    #[test]
    fn overlay_levels_pick_colours_and_clamp() {
        let image = flat(20, 20, 20.0);
        for (level, expected) in [
            (0u8, LEVEL_RGB[0]),
            (1, LEVEL_RGB[1]),
            (4, LEVEL_RGB[4]),
            (200, LEVEL_RGB[4]),
        ] {
            let overlay = Overlay {
                rect: PixelRect {
                    x: 5,
                    y: 5,
                    w: 3,
                    h: 3,
                },
                label: String::new(),
                level,
            };
            // Scale 1, small image → text scale 1 → 1-px line at distance 2 outside.
            let out = render(&image, &[overlay], &opts(Palette::Iron, 1, false)).unwrap();
            assert_eq!(out.pixel(3, 6), Some(expected), "level {level}");
        }
    }

    #[test]
    fn box_and_label_at_the_bottom_right_edge_stay_inside() {
        let image = gradient(80, 60, 10.0, 60.0);
        let overlay = Overlay {
            rect: PixelRect {
                x: 78,
                y: 58,
                w: 50, // reaches far beyond the edge
                h: 50,
            },
            label: "81.4 °C L4 with a label too long to fit".to_owned(),
            level: 4,
        };
        let corner = Overlay {
            rect: PixelRect {
                x: 0,
                y: 0,
                w: 1,
                h: 1,
            },
            label: "corner".to_owned(),
            level: 2,
        };
        for scale in [1, 3, 6] {
            for bar in [false, true] {
                let options = opts(Palette::Rainbow, scale, bar);
                let out = render(&image, &[overlay.clone(), corner.clone()], &options).unwrap();
                assert_eq!(out.pixels.len(), (out.width * out.height * 3) as usize);
                let (w, h) = (80 * scale, 60 * scale);
                // The coloured line is pushed inside the image at the clipped edges.
                assert_eq!(out.pixel(w - 2, h - 3), Some(LEVEL_RGB[4]), "scale {scale}");
                assert_eq!(out.pixel(w - 1, h - 3), Some(OUTLINE_RGB));
                if bar {
                    // Nothing spilled into the scale bar panel.
                    for y in 0..h {
                        assert_eq!(out.pixel(w, y), Some(PANEL_BACKGROUND_RGB), "y {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn tiny_images_render_without_panicking() {
        let overlay = Overlay {
            rect: PixelRect {
                x: 0,
                y: 0,
                w: 0,
                h: 0,
            },
            label: "81.4 °C L3".to_owned(),
            level: 3,
        };
        for (w, h) in [(1, 1), (200, 1), (1, 200), (3, 2)] {
            for scale in [0, 1, 8] {
                let options = RenderOptions {
                    scale,
                    ..RenderOptions::default()
                };
                let out = render(
                    &gradient(w, h, 0.0, 1.0),
                    std::slice::from_ref(&overlay),
                    &options,
                )
                .unwrap();
                let s = options.effective_scale(w).unwrap();
                assert_eq!(out.height, h * s);
                assert!(out.width > w * s);
                encode_png(&out).unwrap();
            }
        }
    }

    #[test]
    fn label_sits_above_the_box_on_a_dark_background() {
        let image = flat(80, 60, 20.0);
        let overlay = Overlay {
            rect: PixelRect {
                x: 30,
                y: 30,
                w: 4,
                h: 4,
            },
            label: "L".to_owned(),
            level: 1,
        };
        // Scale 1: text scale 1, label 10×10 px directly above the box outline.
        let out = render(&image, &[overlay], &opts(Palette::Grey, 1, false)).unwrap();
        let (ox0, oy0) = (30 - 3, 30 - 3);
        assert_eq!(out.pixel(ox0, oy0 - 10), Some(LABEL_BACKGROUND_RGB));
        assert_eq!(out.pixel(ox0 + 9, oy0 - 1), Some(LABEL_BACKGROUND_RGB));
        // 'L' has its vertical stroke in font columns 0..=3 at row 0 (0x0F).
        let glyph_l = glyph('L');
        let col = (0..8).find(|c| glyph_l[0] >> c & 1 == 1).unwrap();
        assert_eq!(out.pixel(ox0 + 1 + col, oy0 - 9), Some(LEVEL_RGB[1]));
    }

    #[test]
    fn overlay_starting_outside_the_image_is_an_error() {
        let overlay = Overlay {
            rect: PixelRect {
                x: 80,
                y: 0,
                w: 1,
                h: 1,
            },
            label: "x".to_owned(),
            level: 0,
        };
        let err = render(
            &flat(80, 60, 1.0),
            &[overlay],
            &opts(Palette::Iron, 1, false),
        )
        .unwrap_err();
        assert!(
            matches!(err, RenderError::OverlayOutOfBounds { .. }),
            "{err}"
        );
    }

    #[test]
    fn degree_sign_comes_from_the_latin_set() {
        assert_eq!(glyph('°'), [0x1C, 0x36, 0x36, 0x1C, 0, 0, 0, 0]);
        assert_eq!(glyph('€'), glyph('?'));
        assert_eq!(tick_label(-0.01), "0.0°C");
        assert_eq!(tick_label(81.44), "81.4°C");
    }

    #[test]
    fn png_round_trips_size_and_pixels() {
        let image = gradient(80, 60, 20.0, 90.0);
        let out = render(&image, &[], &RenderOptions::default()).unwrap();
        let bytes = encode_png(&out).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (out.width, out.height));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&buf[..info.buffer_size()], &out.pixels[..]);
    }

    #[test]
    fn encode_png_rejects_a_short_buffer() {
        let bad = RgbImage {
            width: 2,
            height: 2,
            pixels: vec![0; 11],
        };
        assert!(matches!(
            encode_png(&bad),
            Err(RenderError::BufferMismatch { .. })
        ));
    }

    #[test]
    fn palette_names_parse_and_display() {
        for palette in Palette::ALL {
            assert_eq!(palette.to_string().parse::<Palette>().unwrap(), palette);
        }
        assert_eq!("gray".parse::<Palette>().unwrap(), Palette::Grey);
        assert_eq!(" Iron ".parse::<Palette>().unwrap(), Palette::Iron);
        let err = "jet".parse::<Palette>().unwrap_err();
        let message = err.to_string();
        assert!(message.contains("\"jet\""), "{message}");
        for name in ["iron", "rainbow", "grey"] {
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn default_options_are_iron_auto_scale_with_bar() {
        let options = RenderOptions::default();
        assert_eq!(options.palette, Palette::Iron);
        assert_eq!(options.scale, AUTO_SCALE);
        assert!(options.scale_bar);
        assert!(options.span.is_none());
    }
}
