//! What the analysis chain asks of a component detector.

use chitti_common::finding::{DetectedComponent, ModelIdentity};
use chitti_common::geometry::PixelRect;
use chitti_common::image::TemperatureImage;

/// A component found in a frame by a [`Detector`].
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Class name.
    pub class: String,
    /// Confidence 0..1.
    pub confidence: f64,
    /// Box in raw image pixels.
    pub bbox: PixelRect,
}

impl Detection {
    /// The detection as the wire's component.
    pub fn to_component(&self) -> DetectedComponent {
        DetectedComponent {
            class: self.class.clone(),
            confidence: self.confidence,
            bbox: self.bbox,
        }
    }
}

/// Finds components (bushings, clamps, insulators …) in a frame. [`NoDetector`] finds
/// none and hotspots stand on thresholds alone.
pub trait Detector: Send {
    /// Components in the frame.
    fn detect(&mut self, image: &TemperatureImage) -> Vec<Detection>;
    /// The model, when one runs.
    fn model(&self) -> Option<ModelIdentity>;
}

/// The detector of a gateway without a model: finds nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDetector;

impl Detector for NoDetector {
    fn detect(&mut self, _image: &TemperatureImage) -> Vec<Detection> {
        Vec::new()
    }
    fn model(&self) -> Option<ModelIdentity> {
        None
    }
}
