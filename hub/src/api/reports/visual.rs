//! Reading evidence for reports: the camera's visual JPEG inside a FLIR evidence file
//! (`visual.jpg`), and the thermograms and visual image a report page embeds.

use crate::api::auth::Principal;
use crate::api::error::{ApiError, ErrorBody, ErrorCode};
use crate::api::evidence::{
    evidence_error, finding_overlays, measurement_overrides, temperature_image, BinaryBody,
};
use crate::api::ApiState;
use crate::evidence::{validate_sha256, EvidenceKind};
use crate::store::Role;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chitti_common::finding::Finding;
use chitti_common::flir::{EmbeddedImage, VisualImageKind};
use chitti_common::render::{Palette, RenderOptions};

use super::inspection::{PageImages, Visual, MAX_REPORT_IMAGE_BYTES};
use super::internal;
use chitti_common::flir::jpeg_geometry;

/// Why an evidence blob has no visual JPEG to show.
#[derive(Debug, thiserror::Error)]
pub enum VisualError {
    /// The blob cannot carry one (agent stream evidence).
    #[error("it is a radiometric PNG from a gateway, which carries no visual image")]
    NotAFlirFile,
    /// A FLIR file without an embedded visual image.
    #[error("the FLIR file carries no visual image")]
    Absent,
    /// A visual image in another encoding.
    #[error("its visual image is {0}, not a JPEG")]
    NotJpeg(&'static str),
    /// A FLIR file that does not parse.
    #[error("it cannot be read as a FLIR file: {0}")]
    Unreadable(String),
}

/// The camera's visual (daylight) JPEG inside an evidence blob.
pub fn visual_jpeg(bytes: &[u8]) -> Result<EmbeddedImage, VisualError> {
    match EvidenceKind::sniff(bytes) {
        Some(EvidenceKind::Jpeg | EvidenceKind::Fff) => {}
        Some(EvidenceKind::Png) => return Err(VisualError::NotAFlirFile),
        None => return Err(VisualError::Unreadable("unknown content".into())),
    }
    let frame = chitti_common::flir::parse_bytes(bytes)
        .map_err(|e| VisualError::Unreadable(e.to_string()))?;
    let visual = frame.visual.ok_or(VisualError::Absent)?;
    match visual.kind {
        VisualImageKind::Jpeg => Ok(visual),
        VisualImageKind::Png => Err(VisualError::NotJpeg("a PNG")),
        VisualImageKind::Raw => Err(VisualError::NotJpeg("uncompressed")),
    }
}

/// The visual (daylight) image a FLIR evidence file carries, as the camera stored it.
#[utoipa::path(
    get,
    path = "/api/v1/evidence/{sha256}/visual.jpg",
    tag = "evidence",
    params(("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "Lowercase hex SHA-256 of the evidence")),
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The embedded visual JPEG, byte for byte", body = BinaryBody, content_type = "image/jpeg"),
        (status = 400, description = "Malformed hash", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Needs the viewer role", body = ErrorBody),
        (status = 404, description = "Unknown evidence, or it carries no visual JPEG (agent PNG evidence, a FLIR file without one or with a PNG one)", body = ErrorBody),
        (status = 415, description = "The evidence cannot be read as a FLIR file", body = ErrorBody),
    )
)]
pub(super) async fn visual_jpg(
    State(s): State<ApiState>,
    p: Principal,
    Path(sha): Path<String>,
) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    validate_sha256(&sha).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let bytes = s
        .evidence
        .get(&sha)
        .await
        .map_err(evidence_error)?
        .ok_or_else(|| ApiError::not_found(format!("evidence {sha}")))?;
    let _slot = s.analysis_slot()?;
    let visual = tokio::task::spawn_blocking(move || visual_jpeg(&bytes))
        .await
        .map_err(|_| internal())?
        .map_err(|e| match e {
            VisualError::Unreadable(_) => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("no visual image in evidence {sha}: {e}"),
            ),
            _ => ApiError::new(
                ErrorCode::NotFound,
                format!("no visual image in evidence {sha}: {e}"),
            ),
        })?;
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!("inline; filename=\"{sha}-visual.jpg\""))
                .map_err(|_| internal())?,
        ),
        (
            header::ETAG,
            HeaderValue::from_str(&format!("\"{sha}-visual\"")).map_err(|_| internal())?,
        ),
    ];
    Ok((headers, visual.bytes).into_response())
}

/// The thermograms of findings that share one evidence file (`None`: none reported),
/// in their order, and the file's visual image, as far as the file allows.
pub(super) async fn evidence_images(
    s: &ApiState,
    sha: Option<String>,
    findings: Vec<Finding>,
    image_bytes: &mut usize,
) -> (Vec<PageImages>, Option<Visual>) {
    let noted = |note: String| {
        let pages = findings
            .iter()
            .map(|_| PageImages {
                notes: vec![note.clone()],
                ..PageImages::default()
            })
            .collect();
        (pages, None)
    };
    let Some(sha) = sha else {
        return noted("No evidence file was reported with this finding.".into());
    };
    let bytes = match s.evidence.get(&sha).await {
        Ok(Some(b)) => b,
        Ok(None) | Err(crate::evidence::EvidenceError::BadName(_)) => {
            return noted(format!("Evidence {sha} has not been uploaded yet."));
        }
        Err(e) => {
            tracing::error!(err = %e, "evidence storage failed while writing a report");
            return noted(format!("Evidence {sha} could not be read (storage error)."));
        }
    };
    let budget_left = MAX_REPORT_IMAGE_BYTES.saturating_sub(*image_bytes);
    let count = findings.len();
    let result =
        tokio::task::spawn_blocking(move || render_evidence(&findings, &bytes, budget_left)).await;
    match result {
        Ok((pages, visual)) => {
            *image_bytes += pages
                .iter()
                .map(|p| p.thermogram.as_ref().map_or(0, |t| t.0.len()))
                .sum::<usize>()
                + visual.as_ref().map_or(0, |v| v.0.len());
            (pages, visual)
        }
        Err(_) => {
            let pages = (0..count)
                .map(|_| PageImages {
                    notes: vec!["The evidence could not be rendered.".into()],
                    ..PageImages::default()
                })
                .collect();
            (pages, None)
        }
    }
}

fn render_evidence(
    findings: &[Finding],
    bytes: &[u8],
    budget_left: usize,
) -> (Vec<PageImages>, Option<Visual>) {
    let mut pages: Vec<PageImages> = findings.iter().map(|_| PageImages::default()).collect();
    let mut used = 0usize;
    // One conversion per set of measurement conditions (an upload's findings share
    // them; a stream's may differ).
    let mut converted: Option<(chitti_common::radiometry::ParamOverrides, _)> = None;
    for (f, page) in findings.iter().zip(&mut pages) {
        let overrides = measurement_overrides(&f.measurement);
        let reuse = matches!(&converted, Some((o, _)) if *o == overrides);
        if !reuse {
            converted = Some((overrides, temperature_image(bytes, &overrides)));
        }
        let Some((_, result)) = &converted else {
            continue;
        };
        let t = match result {
            Ok(t) => t,
            Err(e) => {
                page.notes.push(format!(
                    "No temperatures could be read from the evidence: {e}."
                ));
                continue;
            }
        };
        let overlays = finding_overlays(f, t.image.width(), t.image.height());
        let options = RenderOptions {
            palette: Palette::Iron,
            span: None,
            scale: chitti_common::render::AUTO_SCALE,
            scale_bar: true,
        };
        match chitti_common::render::render(&t.image, &overlays, &options) {
            Ok(rgb) => {
                // Fast deflate: thermograms are large flat areas; level 1 is several
                // times quicker than the default for a few percent more bytes.
                let packed = miniz_oxide::deflate::compress_to_vec_zlib(&rgb.pixels, 1);
                if used + packed.len() <= budget_left {
                    used += packed.len();
                    page.thermogram = Some((packed, rgb.width, rgb.height));
                } else {
                    page.notes
                        .push("Thermogram left out: the report's image limit is reached.".into());
                }
            }
            Err(e) => page
                .notes
                .push(format!("The thermogram could not be drawn: {e}.")),
        }
    }
    let mut visual = None;
    let note = match visual_jpeg(bytes) {
        Ok(v) => match jpeg_geometry(&v.bytes) {
            Some((w, h, comps)) if used + v.bytes.len() <= budget_left => {
                visual = Some((v.bytes, w, h, comps));
                None
            }
            Some(_) => Some("Visual image left out: the report's image limit is reached.".into()),
            None => Some("The visual image is a JPEG this report cannot embed.".into()),
        },
        Err(VisualError::NotAFlirFile) | Err(VisualError::Absent) => None,
        Err(e) => Some(format!("Visual image not shown: {e}.")),
    };
    if let Some(note) = note {
        for page in &mut pages {
            page.notes.push(note.clone());
        }
    }
    (pages, visual)
}
