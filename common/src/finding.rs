//! The `Finding`: one hotspot episode on one piece of equipment, as the agent reports it
//! and the hub stores it (DESIGN.md §3). This is wire format: fields are added, never
//! renamed or removed, within protocol version 1.

use crate::geometry::{PixelPoint, PixelRect};
use crate::severity::SeverityAssessment;
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One hotspot episode: raised once, updated when its severity or peak changes
/// materially, cleared when it has been gone for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Finding {
    /// UUIDv7: unique, and time-ordered so the hub's index stays append-mostly.
    pub id: Uuid,
    /// Site id (`[a-z0-9-]{1,64}`).
    pub site: String,
    /// Gateway id (`[a-z0-9-]{1,64}`).
    pub gateway: String,
    /// Camera id within the gateway.
    pub camera: String,
    /// Asset the camera (or preset) looks at, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// Pan-tilt preset the frame was taken at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// When the frame was captured, by the camera's clock (with its UTC offset).
    pub captured_at: DateTime<FixedOffset>,
    /// When the agent observed (analysed) it, by the gateway's clock.
    pub observed_at: DateTime<Utc>,
    /// Where the frame came from.
    pub source: FindingSource,
    /// The component a detector found around the hotspot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<DetectedComponent>,
    /// The hot (or, for a cool exception, cold) region.
    pub hotspot: HotspotSummary,
    /// The reference temperature(s) the severity compared against.
    pub reference: ReferenceSummary,
    /// The severity assessment, with its table, inputs and recommended action.
    pub severity: SeverityAssessment,
    /// The measurement conditions.
    pub measurement: Measurement,
    /// The tracking episode this finding belongs to.
    pub track: TrackSummary,
    /// The detection model, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelIdentity>,
    /// The radiometric frame behind the finding, uploaded separately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceRef>,
    /// True when replayed from the outbox after a disconnect.
    #[serde(default)]
    pub historical: bool,
    /// The image-quality gate's verdict when the frame failed it (`quantitative: false`,
    /// with the reasons); absent for a frame that passed, and on older payloads. The
    /// severity is then flagged `qualitative` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::quality::ImageQuality>,
}

/// Where the analysed frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FindingSource {
    /// A live camera stream.
    Stream,
    /// A radiometric file (R-JPEG, .fff, .seq, .csq) from a folder or replay.
    Rjpeg,
    /// A file uploaded by hand to the hub.
    Upload,
}

/// A component found by the detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DetectedComponent {
    /// Class name (bushing, clamp, insulator, disconnector, breaker, ct, pt …).
    pub class: String,
    /// Detector confidence 0..1.
    pub confidence: f64,
    /// Box in raw image pixels.
    #[cfg_attr(feature = "openapi", schema(schema_with = openapi::pixel_rect))]
    pub bbox: PixelRect,
}

/// The region that triggered the finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HotspotSummary {
    /// Bounding box in raw image pixels.
    #[cfg_attr(feature = "openapi", schema(schema_with = openapi::pixel_rect))]
    pub bbox: PixelRect,
    /// Hottest pixel, °C.
    pub max_c: f64,
    /// Mean over the region, °C.
    pub mean_c: f64,
    /// Where the hottest pixel is.
    #[cfg_attr(feature = "openapi", schema(schema_with = openapi::pixel_point))]
    pub max_at: PixelPoint,
    /// Region size, pixels.
    pub area_px: u32,
}

/// The reference temperatures behind a ΔT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReferenceSummary {
    /// Ambient air temperature, °C.
    pub ambient_c: f64,
    /// Where the ambient value came from (camera parameter, weather station, config).
    pub ambient_source: String,
    /// The similar component compared against, when paired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similar: Option<SimilarComponent>,
}

/// A similar component under similar load (typically a sibling phase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimilarComponent {
    /// What it is (e.g. "phase A bushing").
    pub label: String,
    /// Its temperature, °C.
    pub celsius: f64,
}

/// The measurement conditions of the frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Measurement {
    /// Emissivity used.
    pub emissivity: f64,
    /// Object distance, metres.
    pub distance_m: f64,
    /// Reflected apparent temperature, °C.
    pub reflected_c: f64,
    /// Atmospheric temperature, °C.
    pub atmosphere_c: f64,
    /// Relative humidity, fraction.
    pub relative_humidity: f64,
    /// True for a non-radiometric source (colour video): temperatures are not measured,
    /// only detections are reported.
    pub qualitative: bool,
}

/// The state of a tracked episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TrackState {
    /// First report of the episode.
    Raised,
    /// Severity or peak changed materially.
    Updated,
    /// Gone for long enough: the episode is over.
    Cleared,
}

/// The tracking episode a finding belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrackSummary {
    /// Episode id (stable across raised/updated/cleared).
    pub id: Uuid,
    /// First frame the region was seen in.
    pub first_seen: DateTime<Utc>,
    /// Last frame the region was seen in.
    pub last_seen: DateTime<Utc>,
    /// Frames the region has been seen in.
    pub frames: u32,
    /// Raised, updated or cleared.
    pub state: TrackState,
}

/// Identity of a detection model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelIdentity {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// SHA-256 of the model file, hex.
    pub sha256: String,
}

/// Reference to the evidence blob (`PUT /api/v1/evidence/{sha256}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvidenceRef {
    /// SHA-256 of the blob, lowercase hex.
    pub sha256: String,
}

/// Schemas of the types that serialise in a form of their own (`[x, y]`, `[x, y, w, h]`).
#[cfg(feature = "openapi")]
pub(crate) mod openapi {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    use utoipa::openapi::Array;

    fn pixels(len: usize, description: &str) -> Array {
        ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int32,
                    )))
                    .minimum(Some(0)),
            )
            .min_items(Some(len))
            .max_items(Some(len))
            .description(Some(description))
            .build()
    }

    /// A [`crate::geometry::PixelRect`]: `[x, y, w, h]`.
    pub(crate) fn pixel_rect() -> Array {
        pixels(
            4,
            "`[x, y, w, h]` in raw image pixels: left column, top row, width, height",
        )
    }

    /// A [`crate::geometry::PixelPoint`]: `[x, y]`.
    pub(super) fn pixel_point() -> Array {
        pixels(2, "`[x, y]` in raw image pixels: column, row")
    }
}
