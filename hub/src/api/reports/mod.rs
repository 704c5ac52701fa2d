//! Reports: CSV exports of the alert and finding lists, the PDF inspection report of a
//! site and period, and the camera's visual image inside FLIR evidence.
//!
//! | endpoint | role |
//! |---|---|
//! | `GET /api/v1/alerts/export.csv` (the alert list's filters and `sort`) | viewer |
//! | `GET /api/v1/findings/export.csv` (the finding list's filters) | viewer |
//! | `GET /api/v1/reports/inspection.pdf?site=&from=&to=` | viewer |
//! | `GET /api/v1/evidence/{sha256}/visual.jpg` | viewer |
//!
//!
//! The module is split by what each part does: `csv` (the exports), `inspection` (the
//! report's selection of tracks and its handler), `visual` (reading evidence: the
//! visual JPEG and the thermograms a report embeds) and `pdf` (the layout engine). The
//! JPEG frame-header reader is `chitti_common::flir::jpeg_geometry`, the same marker
//! walk the FLIR parser uses.

mod csv;
mod inspection;
mod pdf;
mod visual;

use super::error::{ApiError, ErrorCode};
use super::ApiState;
use chrono::{DateTime, SecondsFormat, Utc};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use chitti_common::flir::jpeg_geometry;
pub(crate) use csv::{csv_bytes, csv_response, header_row, Export};
pub use csv::{ALERT_COLUMNS, FINDING_COLUMNS};
pub use inspection::{
    InspectionParams, MAX_REPORT_IMAGE_BYTES, MAX_REPORT_SCANNED_ALERTS,
    MAX_REPORT_SCANNED_FINDINGS, MAX_REPORT_TRACKS,
};
pub use visual::{visual_jpeg, VisualError};

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(csv::alerts_csv))
        .routes(routes!(csv::findings_csv))
        .routes(routes!(inspection::inspection_pdf))
        .routes(routes!(visual::visual_jpg))
}

pub(super) fn internal() -> ApiError {
    ApiError::new(ErrorCode::Internal, "internal error")
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn opt_num(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}
