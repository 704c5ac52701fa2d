//! In-memory images: [`RawFrame`] (camera counts) and [`TemperatureImage`] (°C).
//!
//! Both are row-major, `x` = column, `y` = row (see [`crate::geometry`]).

use crate::geometry::PixelPoint;

/// Largest width or height accepted for a thermal image. The biggest radiometric
/// sensors on the market are 1280×1024; 8192 leaves room for super-resolution
/// re-saves while keeping any allocation driven by a header field bounded.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// The shape of an image did not match its pixel buffer, or was out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageShapeError {
    /// Width or height is zero or above [`MAX_IMAGE_SIDE`].
    #[error("image size {width}x{height} is out of range (1..={max} per side)", max = MAX_IMAGE_SIDE)]
    OutOfRange {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// `width × height` differs from the number of pixels supplied.
    #[error("image size {width}x{height} needs {expected} pixels, got {actual}")]
    LengthMismatch {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// `width × height`.
        expected: usize,
        /// Pixels supplied.
        actual: usize,
    },
}

/// Checks a declared image size against [`MAX_IMAGE_SIDE`] and returns the pixel count.
pub fn checked_pixel_count(width: u32, height: u32) -> Result<usize, ImageShapeError> {
    if width == 0 || height == 0 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(ImageShapeError::OutOfRange { width, height });
    }
    Ok(width as usize * height as usize)
}

/// Raw detector counts of one thermal frame, exactly as the camera stored them.
///
/// Counts only become temperatures together with the frame's
/// [`crate::radiometry::RadiometricParams`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    width: u32,
    height: u32,
    counts: Vec<u16>,
}

impl RawFrame {
    /// Wraps row-major counts; fails when the buffer does not match the size.
    pub fn new(width: u32, height: u32, counts: Vec<u16>) -> Result<Self, ImageShapeError> {
        let expected = checked_pixel_count(width, height)?;
        if counts.len() != expected {
            return Err(ImageShapeError::LengthMismatch {
                width,
                height,
                expected,
                actual: counts.len(),
            });
        }
        Ok(Self {
            width,
            height,
            counts,
        })
    }

    /// Width in pixels (columns).
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels (rows).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row-major counts.
    pub fn counts(&self) -> &[u16] {
        &self.counts
    }

    /// The count at column `x`, row `y`, or `None` outside the frame.
    pub fn get(&self, x: u32, y: u32) -> Option<u16> {
        (x < self.width && y < self.height)
            .then(|| self.counts[y as usize * self.width as usize + x as usize])
    }

    /// Smallest and largest count in the frame.
    pub fn min_max(&self) -> (u16, u16) {
        // Two independent folds vectorise better than one fold over a tuple.
        let min = self.counts.iter().copied().min().unwrap_or(0);
        let max = self.counts.iter().copied().max().unwrap_or(0);
        (min, max)
    }
}

/// A frame converted to degrees Celsius, row-major, one `f32` per pixel.
///
/// `f32` keeps 1e-5 °C resolution over the whole −273…+2000 °C range, far below the
/// 0.01 °C the thermal core promises, and halves memory and bandwidth against `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct TemperatureImage {
    width: u32,
    height: u32,
    celsius: Vec<f32>,
}

impl TemperatureImage {
    /// Wraps row-major °C values; fails when the buffer does not match the size.
    pub fn new(width: u32, height: u32, celsius: Vec<f32>) -> Result<Self, ImageShapeError> {
        let expected = checked_pixel_count(width, height)?;
        if celsius.len() != expected {
            return Err(ImageShapeError::LengthMismatch {
                width,
                height,
                expected,
                actual: celsius.len(),
            });
        }
        Ok(Self {
            width,
            height,
            celsius,
        })
    }

    /// Width in pixels (columns).
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels (rows).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row-major temperatures in °C.
    pub fn celsius(&self) -> &[f32] {
        &self.celsius
    }

    /// The temperature at column `x`, row `y`, or `None` outside the image.
    pub fn get(&self, x: u32, y: u32) -> Option<f32> {
        (x < self.width && y < self.height)
            .then(|| self.celsius[y as usize * self.width as usize + x as usize])
    }

    /// Minimum, maximum and mean temperature, with the position of the (first) maximum.
    pub fn stats(&self) -> TemperatureStats {
        let mut min = f32::INFINITY;
        let mut max = f32::NEG_INFINITY;
        let mut max_index = 0usize;
        let mut sum = 0f64;
        for (i, &c) in self.celsius.iter().enumerate() {
            if c < min {
                min = c;
            }
            if c > max {
                max = c;
                max_index = i;
            }
            sum += f64::from(c);
        }
        let w = self.width as usize;
        TemperatureStats {
            min_c: f64::from(min),
            max_c: f64::from(max),
            mean_c: sum / self.celsius.len() as f64,
            max_at: PixelPoint {
                x: (max_index % w) as u32,
                y: (max_index / w) as u32,
            },
        }
    }
}

/// Summary statistics of a [`TemperatureImage`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemperatureStats {
    /// Coldest pixel, °C.
    pub min_c: f64,
    /// Hottest pixel, °C.
    pub max_c: f64,
    /// Mean over all pixels, °C.
    pub mean_c: f64,
    /// Where the hottest pixel is (first in row-major order on ties).
    pub max_at: PixelPoint,
}
